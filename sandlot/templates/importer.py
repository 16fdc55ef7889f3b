"""Import a container image (`docker save`, or an OCI image layout) as template layers.

Each image layer becomes one directory in overlayfs's own format, ready to stack as an
overlay lower layer: `LAYER_ROOT/<id>/{root/, layer.json}`, where id is the first 16
hex digits of the layer's diff_id (the sha256 of its uncompressed tar). Layers are
content-addressed, so two images sharing a base share its directories, and importing
an image again unpacks nothing.

A layer is unpacked into `LAYER_ROOT/.staging-<id>-<pid>-…` and renamed into place
only once complete and verified (blob digest, diff_id), so a crash or a rejected
archive never leaves a half layer where a sandbox could stack it. The archive is
untrusted throughout: see layer_tar.py for what a member may and may not do, and
import_limits.py for what an import may cost.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandlot.templates.blob_stream import HashingReader, TarEndPadding, decompressed
from sandlot.templates.import_limits import ImportBudget, ImportLimits, ImportRejected
from sandlot.templates.layer_tar import apply_layer
from sandlot.templates.oci_archive import ImageArchive, LayerBlob, open_archive

__all__ = ["ImageConfig", "ImportLimits", "ImportRejected", "import_image"]

LAYER_ID_LENGTH = 16


@dataclass(frozen=True)
class ImageConfig:
    """What the image says about running it: the template's defaults."""

    env: dict[str, str]
    workdir: str
    user: str
    """As the image has it: "", a name, "uid", or "uid:gid"."""
    cmd: list[str]
    entrypoint: list[str]
    ports: list[int]
    """TCP ports the image exposes, sorted."""


def import_image(
    source: Path,
    layer_root: Path,
    *,
    uid_offset: int,
    limits: ImportLimits = ImportLimits(),  # noqa: B008 (frozen, so sharing it is safe)
    on_progress: Callable[[str], None] = lambda line: None,
) -> tuple[ImageConfig, list[Path]]:
    """Unpack the image at `source` into layers under `layer_root`.

    Returns the image config and the layers' `root/` directories, top first (the order
    of overlayfs's lowerdir=). A layer the image lists twice is returned once, at its
    topmost place: overlayfs refuses a directory twice, and the lower copy is hidden
    by the upper one anyway. Raises ImportRejected for a malformed or unsafe archive;
    then nothing of it is left under `layer_root`.
    """
    if os.geteuid() != 0:
        raise PermissionError(
            "importing an image needs root: layers keep the image's owners, device-node "
            "whiteouts and trusted.* xattrs"
        )
    layer_root.mkdir(parents=True, exist_ok=True)
    budget = ImportBudget(limits)
    with open_archive(source, limits) as image:
        config = image_config(image.config)
        ids = []
        for number, blob in enumerate(image.layers, 1):
            label = f"layer {number}/{len(image.layers)} ({blob.path})"
            ids.append(
                _import_layer(image, blob, layer_root, uid_offset, budget, label, on_progress)
            )
    roots: list[Path] = []
    for layer_id in reversed(ids):
        root = layer_root / layer_id / "root"
        if root not in roots:
            roots.append(root)
    on_progress(f"imported {len(ids)} layers")
    return config, roots


def image_config(raw: dict[str, Any]) -> ImageConfig:
    """The run settings of an image config JSON; missing ones take Docker's defaults."""
    cfg = raw.get("config")
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ImportRejected("the image config's `config` should be a JSON object")
    env: dict[str, str] = {}
    for item in _strings(cfg.get("Env"), "Env"):
        key, _, value = item.partition("=")
        if key:
            env[key] = value
    return ImageConfig(
        env=env,
        workdir=_string(cfg.get("WorkingDir"), "WorkingDir") or "/",
        user=_string(cfg.get("User"), "User"),
        cmd=_strings(cfg.get("Cmd"), "Cmd"),
        entrypoint=_strings(cfg.get("Entrypoint"), "Entrypoint"),
        ports=_tcp_ports(cfg.get("ExposedPorts")),
    )


def _string(value: Any, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImportRejected(f"the image config's {key} should be a string")
    return value


def _strings(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImportRejected(f"the image config's {key} should be a list of strings")
    return list(value)


def _tcp_ports(value: Any) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ImportRejected("the image config's ExposedPorts should be a JSON object")
    ports = set()
    for key in value:
        number, _, protocol = key.partition("/")
        if protocol not in ("", "tcp"):
            continue
        if not number.isdigit() or not 0 < int(number) < 65536:
            raise ImportRejected(f"the image config exposes {key!r}, which is not a port")
        ports.add(int(number))
    return sorted(ports)


def _import_layer(
    image: ImageArchive,
    blob: LayerBlob,
    layer_root: Path,
    uid_offset: int,
    budget: ImportBudget,
    label: str,
    on_progress: Callable[[str], None],
) -> str:
    """The id of `blob`'s layer under `layer_root`, unpacking it unless already there."""
    layer_id = blob.diff_id.removeprefix("sha256:")[:LAYER_ID_LENGTH]
    if _installed(layer_root / layer_id, blob.diff_id, label):
        on_progress(f"{label}: {layer_id} already imported")
        return layer_id
    on_progress(f"{label}: unpacking into {layer_id}")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{layer_id}-{os.getpid()}-", dir=layer_root))
    try:
        size = _unpack(image, blob, staging, uid_offset, budget, label)
        meta = {
            "id": layer_id,
            "sizeBytes": size,
            "createdBy": f"import {blob.path}",
            "diffId": blob.diff_id,
        }
        (staging / "layer.json").write_text(json.dumps(meta, indent=2))
        staging.chmod(0o755)
        try:
            staging.rename(layer_root / layer_id)
        except OSError:
            # Another import of the same layer finished first; its copy is as good.
            if not _installed(layer_root / layer_id, blob.diff_id, label):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    on_progress(f"{label}: {size} bytes unpacked")
    return layer_id


def _installed(layer: Path, diff_id: str, label: str) -> bool:
    """Whether `layer` is already this layer, imported before."""
    try:
        meta = json.loads((layer / "layer.json").read_text())
    except FileNotFoundError:
        return False
    except ValueError:
        meta = None
    recorded = meta.get("diffId") if isinstance(meta, dict) else None
    if recorded != diff_id:
        # Ids are 64 bits of the diff_id: another layer under the same id (a build
        # step's, or an image's) is a collision someone worked for, never to be
        # stacked in this one's place.
        raise ImportRejected(
            f"{label}: its id {layer.name} is taken by another layer "
            f"({recorded or 'not an imported one'})"
        )
    return True


def _unpack(
    image: ImageArchive,
    blob: LayerBlob,
    staging: Path,
    uid_offset: int,
    budget: ImportBudget,
    label: str,
) -> int:
    """Unpack `blob` into `staging/root`, checking both its digests; returns its content size."""
    root = staging / "root"
    root.mkdir()
    algorithm = blob.digest.split(":", 1)[0] if blob.digest else "sha256"
    with image.open_layer(blob) as raw:
        stored = HashingReader(raw, algorithm)
        plain, _ = decompressed(stored, lambda why: ImportRejected(f"{label}: {why}"))
        tar_bytes = HashingReader(plain, "sha256", lambda n: budget.add_stream(label, n))
        stream = io.BufferedReader(TarEndPadding(tar_bytes), 1 << 20)
        try:
            stats = apply_layer(stream, root, uid_offset=uid_offset, budget=budget, layer=label)
            # The digests cover every byte, also those after the tar's end-of-archive blocks.
            tar_bytes.drain()
        except ImportRejected:
            # A blob that is not what the archive names is the cause to report, not
            # whatever its damaged content tripped over.
            if blob.digest is not None:
                stored.drain()
                _check_digest(stored, blob.digest, label)
            raise
        stored.drain()
    if blob.digest is not None:
        _check_digest(stored, blob.digest, label)
    diff_id = f"sha256:{tar_bytes.hexdigest()}"
    if diff_id != blob.diff_id:
        raise ImportRejected(
            f"{label}: the uncompressed layer hashes to {diff_id}, but the image config "
            f"says {blob.diff_id} (the archive is corrupt or was tampered with)"
        )
    return stats.size_bytes


def _check_digest(stored: HashingReader, digest: str, label: str) -> None:
    actual = f"{digest.split(':', 1)[0]}:{stored.hexdigest()}"
    if actual != digest:
        raise ImportRejected(
            f"{label}: the blob does not match its digest: its content hashes to {actual} "
            "(the archive is corrupt or was tampered with)"
        )
