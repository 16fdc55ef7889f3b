"""Read an image out of a `docker save` archive or an OCI image layout (tar or directory).

Both formats come down to the same three things: the image config (JSON), and the
layer blobs in order, bottom first, each with the diff_id the config promises for its
uncompressed tar. Where the archive names a blob by its digest (OCI `blobs/sha256/…`,
and docker's `<sha256>.json` configs), the bytes are checked against the name: JSON
blobs here, layer blobs by the importer as they stream (`LayerBlob.digest`).

Nothing here writes to disk; the archive is read in place, a tar through its member
index, so a multi-gigabyte `docker save` is never copied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from sandlot.templates.blob_stream import GZIP_ERRORS, GZIP_MAGIC, guarded
from sandlot.templates.import_limits import ImportLimits, ImportRejected
from sandlot.templates.layer_tar import BoundedTarInfo

MAX_JSON_BYTES = 16 * 2**20
MAX_INDEX_DEPTH = 4
MAX_OUTER_MEMBERS = 100_000
"""Members of the archive itself (blobs and metadata, not layer contents)."""

INDEX_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    }
)
MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    }
)
CONFIG_TYPES = frozenset(
    {
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.docker.container.image.v1+json",
    }
)
_DIGEST = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]{64}|[0-9a-f]{128})")
_LEGACY_CONFIG = re.compile(r"([0-9a-f]{64})\.json")
# platform.machine() to the OCI architecture names.
_ARCHITECTURES = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "i386": "386",
}


@dataclass(frozen=True)
class LayerBlob:
    path: str
    """Where the blob lives in the archive; names the layer in messages."""
    diff_id: str
    """sha256:<hex> of the uncompressed tar, from the image config."""
    digest: str | None
    """<algorithm>:<hex> the stored bytes must hash to, where the archive says."""


class _Files(Protocol):
    def exists(self, path: str) -> bool: ...

    def open(self, path: str) -> IO[bytes]: ...


@dataclass(frozen=True)
class ImageArchive:
    config: dict[str, Any]
    """The image config JSON (`config.Env`, `rootfs.diff_ids`, ...)."""
    layers: list[LayerBlob]
    """Bottom first, as the config lists them."""
    files: _Files

    def open_layer(self, blob: LayerBlob) -> IO[bytes]:
        return self.files.open(blob.path)


def host_architecture() -> str:
    machine = platform.machine().lower()
    return _ARCHITECTURES.get(machine, machine)


@contextlib.contextmanager
def open_archive(source: Path, limits: ImportLimits) -> Iterator[ImageArchive]:
    """The image in `source`: a docker-save tar, an OCI layout tar, or an OCI layout directory."""
    if source.is_dir():
        yield _read_image(_DirFiles(source), source.name, limits)
        return
    with _open_tar(source) as tar:
        yield _read_image(_TarFiles(tar, source.name), source.name, limits)


def _open_tar(source: Path) -> tarfile.TarFile:
    """The archive as a tar, plain or gzip (`docker save | gzip`)."""
    with source.open("rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    try:
        return tarfile.open(source, "r:gz" if gzipped else "r:", tarinfo=BoundedTarInfo)
    except (tarfile.TarError, *GZIP_ERRORS) as e:
        raise ImportRejected(
            f"{source.name} is not an image archive: it is neither a tar file "
            f"(`docker save`, or an OCI image layout) nor a directory ({e})"
        ) from None


def _read_image(files: _Files, label: str, limits: ImportLimits) -> ImageArchive:
    if files.exists("manifest.json"):
        return _docker_save(files, limits)
    if files.exists("index.json"):
        return _oci_layout(files, limits)
    raise ImportRejected(
        f"{label} is not an image archive: it has neither manifest.json (`docker save`) "
        "nor index.json (OCI image layout) at its top level"
    )


def _docker_save(files: _Files, limits: ImportLimits) -> ImageArchive:
    manifest = _json_list(_read_json(files, "manifest.json"), "manifest.json")
    if len(manifest) != 1:
        tags = [str(_json_object(e, "manifest.json").get("RepoTags")) for e in manifest]
        raise ImportRejected(
            f"manifest.json describes {len(manifest)} images ({', '.join(tags) or 'none'}); "
            "save exactly one image (`docker save NAME:TAG`)"
        )
    entry = _json_object(manifest[0], "manifest.json")
    config_path = _archive_path(_json_str(entry.get("Config"), "manifest.json Config"))
    expected = _digest_in_name(config_path)
    config = _json_object(_read_json(files, config_path, expected), config_path)
    layer_paths = [
        _archive_path(_json_str(p, "manifest.json Layers"))
        for p in _json_list(entry.get("Layers"), "manifest.json Layers")
    ]
    blobs = [(path, _digest_in_name(path)) for path in layer_paths]
    return ImageArchive(config, _layers(config, config_path, blobs, limits), files)


def _oci_layout(files: _Files, limits: ImportLimits) -> ImageArchive:
    manifest = _resolve_manifest(files, _read_json(files, "index.json"), "index.json", 0)
    config_desc = _json_object(manifest.get("config"), "image manifest config")
    media_type = config_desc.get("mediaType")
    if media_type is not None and media_type not in CONFIG_TYPES:
        raise ImportRejected(
            f"the image manifest's config is of type {media_type!r}: this is not a container "
            "image (an OCI artifact?)"
        )
    config_digest = _descriptor_digest(config_desc, "image manifest config")
    config_path = _blob_path(config_digest)
    config = _json_object(_read_json(files, config_path, config_digest), config_path)
    blobs: list[tuple[str, str | None]] = []
    for desc in _json_list(manifest.get("layers"), "image manifest layers"):
        digest = _descriptor_digest(_json_object(desc, "image manifest layer"), "layer")
        blobs.append((_blob_path(digest), digest))
    return ImageArchive(config, _layers(config, config_path, blobs, limits), files)


def _resolve_manifest(files: _Files, document: Any, where: str, depth: int) -> dict[str, Any]:
    """Follow image indexes (multi-platform images) down to one image manifest."""
    doc = _json_object(document, where)
    if "manifests" not in doc:
        if "layers" not in doc:
            raise ImportRejected(f"{where} is neither an image index nor an image manifest")
        return doc
    if depth >= MAX_INDEX_DEPTH:
        raise ImportRejected(f"{where}: image indexes nest more than {MAX_INDEX_DEPTH} deep")
    descs = [_json_object(d, where) for d in _json_list(doc["manifests"], f"{where} manifests")]
    chosen = _choose_platform(descs, where)
    digest = _descriptor_digest(chosen, where)
    path = _blob_path(digest)
    return _resolve_manifest(files, _read_json(files, path, digest), path, depth + 1)


def _choose_platform(descs: list[dict[str, Any]], where: str) -> dict[str, Any]:
    images = [d for d in descs if not _is_attestation(d)]
    if len(images) == 1:
        return images[0]
    if not images:
        raise ImportRejected(f"{where} lists no image")
    arch = host_architecture()
    for desc in images:
        plat = desc.get("platform")
        if isinstance(plat, dict) and (plat.get("os"), plat.get("architecture")) == (
            "linux",
            arch,
        ):
            return desc
    offered = ", ".join(_platform_name(d) for d in images)
    raise ImportRejected(
        f"{where} lists {len(images)} images ({offered}) and none is for linux/{arch}, "
        "this server's platform"
    )


def _is_attestation(desc: dict[str, Any]) -> bool:
    """BuildKit's provenance documents sit in an index beside the images, as unknown/unknown."""
    annotations = desc.get("annotations")
    if isinstance(annotations, dict) and "vnd.docker.reference.type" in annotations:
        return True
    plat = desc.get("platform")
    return isinstance(plat, dict) and plat.get("os") == "unknown"


def _platform_name(desc: dict[str, Any]) -> str:
    plat = desc.get("platform")
    if not isinstance(plat, dict):
        return "unspecified"
    return f"{plat.get('os')}/{plat.get('architecture')}"


def _layers(
    config: dict[str, Any],
    config_path: str,
    blobs: list[tuple[str, str | None]],
    limits: ImportLimits,
) -> list[LayerBlob]:
    if len(blobs) > limits.max_layers:
        raise ImportRejected(
            f"the image has {len(blobs)} layers; at most {limits.max_layers} are allowed "
            "(squash the image, e.g. rebuild it with fewer steps)"
        )
    rootfs = _json_object(config.get("rootfs"), f"{config_path} rootfs")
    diff_ids = [
        _json_str(d, f"{config_path} rootfs.diff_ids")
        for d in _json_list(rootfs.get("diff_ids"), f"{config_path} rootfs.diff_ids")
    ]
    if len(diff_ids) != len(blobs):
        raise ImportRejected(
            f"{config_path} lists {len(diff_ids)} layer diff_ids but the manifest lists "
            f"{len(blobs)} layers"
        )
    for diff_id in diff_ids:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", diff_id):
            raise ImportRejected(f"{config_path}: {diff_id!r} is not a sha256 diff_id")
    return [
        LayerBlob(path=path, diff_id=diff_id, digest=digest)
        for (path, digest), diff_id in zip(blobs, diff_ids, strict=True)
    ]


def _descriptor_digest(desc: dict[str, Any], where: str) -> str:
    digest = _json_str(desc.get("digest"), f"{where} digest")
    if not _DIGEST.fullmatch(digest):
        raise ImportRejected(f"{where}: {digest!r} is not a sha256 or sha512 digest")
    return digest


def _blob_path(digest: str) -> str:
    algorithm, hexdigest = digest.split(":", 1)
    return f"blobs/{algorithm}/{hexdigest}"


def _digest_in_name(path: str) -> str | None:
    """The digest a blob's name promises, if it is named by content."""
    if m := _BLOB_PATH.fullmatch(path):
        return f"{m.group(1)}:{m.group(2)}"
    if m := _LEGACY_CONFIG.fullmatch(path):
        return f"sha256:{m.group(1)}"
    return None


def _archive_path(name: str) -> str:
    """A path the manifest names, kept inside the archive."""
    if "\x00" in name or name.startswith("/"):
        raise ImportRejected(f"manifest.json names {name!r}, which is not inside the archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ImportRejected(f"manifest.json names {name!r}, which is not inside the archive")
    return "/".join(parts)


def _read_json(files: _Files, path: str, digest: str | None = None) -> Any:
    if not files.exists(path):
        raise ImportRejected(f"the archive has no {path}, which its manifest names")
    with files.open(path) as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ImportRejected(f"{path} is larger than {MAX_JSON_BYTES} bytes; not image metadata")
    if digest is not None:
        algorithm, expected = digest.split(":", 1)
        actual = hashlib.new(algorithm, data).hexdigest()
        if actual != expected:
            raise ImportRejected(
                f"{path} does not match its digest: its content hashes to "
                f"{algorithm}:{actual} (the archive is corrupt or was tampered with)"
            )
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ImportRejected(f"{path} is not valid JSON: {e}") from None


def _json_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImportRejected(f"{where} should be a JSON object, not {type(value).__name__}")
    return value


def _json_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImportRejected(f"{where} should be a JSON array, not {type(value).__name__}")
    return value


def _json_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ImportRejected(f"{where} should be a string, not {type(value).__name__}")
    return value


class _DirFiles:
    """An OCI layout directory; no path may resolve outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root):
            raise ImportRejected(f"{path} leads outside the image layout directory")
        return full

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def open(self, path: str) -> IO[bytes]:
        return self._path(path).open("rb")


class _TarFiles:
    """The members of an archive tar, read in place; later members win, as in tar."""

    def __init__(self, tar: tarfile.TarFile, label: str) -> None:
        self.tar = tar
        self.label = label
        self.members: dict[str, tarfile.TarInfo] = {}
        try:
            while (member := tar.next()) is not None:
                if len(self.members) >= MAX_OUTER_MEMBERS:
                    raise ImportRejected(
                        f"{label} has more than {MAX_OUTER_MEMBERS} members; not an image archive"
                    )
                name = "/".join(p for p in member.name.split("/") if p not in ("", "."))
                self.members[name] = member
        except (tarfile.TarError, *GZIP_ERRORS) as e:
            raise ImportRejected(f"{label} is not a valid tar archive: {e}") from None

    def exists(self, path: str) -> bool:
        member = self.members.get(path)
        return member is not None and (member.isreg() or member.islnk())

    def open(self, path: str) -> IO[bytes]:
        member = self.members.get(path)
        if member is None or not (member.isreg() or member.islnk()):
            raise ImportRejected(f"{self.label} has no file {path}, which its manifest names")
        try:
            f = self.tar.extractfile(member)
        except (tarfile.TarError, KeyError, RecursionError) as e:
            # KeyError: a hard link to nothing; RecursionError: symlinks in a loop.
            raise ImportRejected(f"{self.label}: {path} cannot be read: {e!r}") from None
        if f is None:
            raise ImportRejected(f"{self.label}: {path} is not a file")
        return guarded(
            f,
            (tarfile.TarError, *GZIP_ERRORS),
            lambda e: ImportRejected(f"{self.label}: {path} cannot be read: {e}"),
        )
