"""Image archives made by hand for the importer's tests: layer tars, `docker save`, OCI.

Layers are built member by member with tarfile, so a test can put in exactly what it
means to, malicious members included; the archive formats are written the way
`docker save` and OCI image layouts lay them out, digests and diff_ids computed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MTIME = 1_600_000_000


@dataclass
class Member:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    mtime: float = MTIME
    pax: dict[str, str] = field(default_factory=dict)


def file(name: str, data: bytes = b"", **kw: Any) -> Member:
    return Member(name, tarfile.REGTYPE, data, **kw)


def directory(name: str, mode: int = 0o755, **kw: Any) -> Member:
    return Member(name, tarfile.DIRTYPE, mode=mode, **kw)


def symlink(name: str, target: str, **kw: Any) -> Member:
    return Member(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw)


def hardlink(name: str, target: str, **kw: Any) -> Member:
    return Member(name, tarfile.LNKTYPE, linkname=target, **kw)


def fifo(name: str, **kw: Any) -> Member:
    return Member(name, tarfile.FIFOTYPE, **kw)


def chardev(name: str, major: int = 1, minor: int = 3) -> Member:
    return Member(name, tarfile.CHRTYPE, devmajor=major, devminor=minor)


def blockdev(name: str, major: int = 8, minor: int = 0) -> Member:
    return Member(name, tarfile.BLKTYPE, devmajor=major, devminor=minor)


def whiteout(path: str) -> Member:
    head, _, name = path.rpartition("/")
    return file(f"{head}/.wh.{name}" if head else f".wh.{name}")


def opaque(directory_path: str) -> Member:
    return file(f"{directory_path}/.wh..wh..opq")


def layer_tar(members: Sequence[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.mode = m.mode
            info.uid, info.gid = m.uid, m.gid
            info.mtime = m.mtime
            info.linkname = m.linkname
            info.devmajor, info.devminor = m.devmajor, m.devminor
            info.pax_headers = dict(m.pax)
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if info.size else None)
    return buf.getvalue()


def lying_tar(name: str, declared_size: int) -> bytes:
    """One header that declares `declared_size` bytes of data, and no data at all."""
    info = tarfile.TarInfo(name)
    info.size = declared_size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + bytes(1024)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_id(tar: bytes) -> str:
    return sha256(tar)[:16]


def image_config(layers: Sequence[bytes], **config: Any) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(t)}" for t in layers]},
    }


def docker_save(
    path: Path,
    layers: Sequence[bytes],
    config: dict[str, Any] | None = None,
    *,
    compress_layers: bool = False,
    gzip_archive: bool = False,
    diff_ids: Sequence[str] | None = None,
) -> Path:
    """Write a `docker save` archive (the legacy layout: `<id>/layer.tar`, `<sha>.json`)."""
    cfg = config if config is not None else image_config(layers)
    if diff_ids is not None:
        cfg["rootfs"]["diff_ids"] = list(diff_ids)
    cfg_bytes = json.dumps(cfg).encode()
    cfg_name = f"{sha256(cfg_bytes)}.json"
    entries: dict[str, bytes] = {cfg_name: cfg_bytes}
    names = []
    for i, tar in enumerate(layers):
        name = f"{i:064x}/layer.tar"
        entries[name] = gzip.compress(tar, mtime=0) if compress_layers else tar
        entries[f"{i:064x}/VERSION"] = b"1.0"
        names.append(name)
    manifest = [{"Config": cfg_name, "RepoTags": ["test:latest"], "Layers": names}]
    entries["manifest.json"] = json.dumps(manifest).encode()
    data = outer_tar(entries)
    path.write_bytes(gzip.compress(data, mtime=0) if gzip_archive else data)
    return path


def outer_tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class OciLayout:
    """An OCI image layout directory written blob by blob."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = sha256(data)
        (self.root / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    def image(self, layers: Sequence[bytes], config: dict[str, Any]) -> dict[str, Any]:
        """Write config, gzip layers and manifest; returns the manifest's descriptor."""
        cfg = {**self.blob(json.dumps(config).encode())}
        cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
        descs = []
        for tar in layers:
            desc = self.blob(gzip.compress(tar, mtime=0))
            desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
            descs.append(desc)
        manifest = {"schemaVersion": 2, "config": cfg, "layers": descs}
        desc = self.blob(json.dumps(manifest).encode())
        desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
        return desc

    def index(self, manifests: Sequence[dict[str, Any]]) -> None:
        doc = {"schemaVersion": 2, "manifests": list(manifests)}
        (self.root / "index.json").write_text(json.dumps(doc))


def tar_directory(directory: Path, path: Path) -> Path:
    """`tar -C directory -cf path .`: members come out as `./index.json`, `./blobs/…`."""
    subprocess.run(["tar", "-C", str(directory), "-cf", str(path), "."], check=True)
    return path


@contextlib.contextmanager
def overlay(lowers: Sequence[Path], target: Path) -> Iterator[Path]:
    """Mount `lowers` (top first) read-only, with no upper layer, as the runtime stacks them."""
    target.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in lowers)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lowerdir}", str(target)],
        check=True,
        capture_output=True,
    )
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def tree(root: Path) -> set[str]:
    """Every path under `root` (not following symlinks), relative to it."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found
