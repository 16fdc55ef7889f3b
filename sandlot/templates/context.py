"""The build context: the directory COPY and ADD read from, minus what `.dockerignore` hides.

Sources are matched inside the context only (no `..`, no absolute paths) and symlinks
are copied as symlinks, never followed, so a context cannot smuggle host files into a
template. The digest of what a COPY reads is part of its cache key: change one byte of
an input and that step and every later one run again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from sandlot.dockerignore import IGNORE_FILE, IgnoreRules
from sandlot.templates.import_limits import ImportBudget, ImportLimits, ImportRejected
from sandlot.templates.layer_tar import apply_layer


class ContextError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    """One file, directory or symlink a COPY takes, and where it lands under the
    destination."""

    path: Path
    target: PurePosixPath


class BuildContext:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.ignore = IgnoreRules.read(self.root / IGNORE_FILE)

    def ignored(self, relative: str) -> bool:
        return self.ignore.ignored(relative)

    def sources(self, patterns: tuple[str, ...], destination: str) -> list[Source]:
        """What `COPY patterns... destination` copies, file by file, in a stable order."""
        found: list[Source] = []
        into_dir = destination.endswith("/") or len(patterns) > 1
        for pattern in patterns:
            matches = self._glob(pattern)
            if not matches:
                raise ContextError(f"{pattern!r} matches nothing in the build context")
            for match in matches:
                relative = match.relative_to(self.root)
                if match.is_dir() and not match.is_symlink():
                    found.extend(self._tree(match))
                    continue
                into_dir = into_dir or len(matches) > 1
                name = PurePosixPath(relative.name) if into_dir else PurePosixPath(".")
                found.append(Source(match, name))
        return found

    def _glob(self, pattern: str) -> list[Path]:
        clean = os.path.normpath(pattern.lstrip("/")) if pattern not in ("", ".") else "."
        if clean.startswith(".."):
            raise ContextError(f"{pattern!r} is outside the build context")
        if clean == ".":
            return [self.root]
        if any(ch in clean for ch in "*?["):
            hits = sorted(p for p in self.root.glob(clean) if not self.ignored(self._rel(p)))
        else:
            candidate = self.root / clean
            hits = (
                [candidate]
                if (candidate.exists() or candidate.is_symlink()) and not self.ignored(clean)
                else []
            )
        return hits

    def _tree(self, directory: Path) -> list[Source]:
        """A directory's contents (not the directory itself, as in Docker)."""
        found = []
        for dirpath, dirnames, filenames in os.walk(directory):
            base = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not self.ignored(self._rel(base / d)))
            for name in [*dirnames, *sorted(filenames)]:
                path = base / name
                if name in filenames and self.ignored(self._rel(path)):
                    continue
                found.append(Source(path, PurePosixPath(path.relative_to(directory).as_posix())))
        return found

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def digest(sources: list[Source]) -> str:
    """What the files say, not when they were touched: paths, modes and contents."""
    h = hashlib.sha256()
    for source in sources:
        st = os.lstat(source.path)
        h.update(
            f"{source.target}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode()
        )
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(source.path).encode())
        elif stat.S_ISREG(st.st_mode):
            with source.path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def place(
    sources: list[Source],
    destination: Path,
    *,
    uid: int,
    gid: int,
    chmod: int | None,
    extract: bool = False,
    uid_offset: int = 0,
) -> None:
    """Copy `sources` under the host directory `destination` (in the new layer), owned
    by the given host ids. Regular files, directories and symlinks only. With `extract`
    (ADD), tar archives are unpacked into `destination` instead, keeping their owners
    (shifted by `uid_offset`)."""
    for number, source in enumerate(sources):
        target = destination / source.target if str(source.target) != "." else destination
        if extract and is_archive(source.path):
            _merge_archive(source.path, destination, uid_offset, number)
            continue
        st = os.lstat(source.path)
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(exist_ok=True)
            mode = stat.S_IMODE(st.st_mode)
        elif stat.S_ISLNK(st.st_mode):
            target.unlink(missing_ok=True)
            os.symlink(os.readlink(source.path), target)
            os.lchown(target, uid, gid)
            continue
        elif stat.S_ISREG(st.st_mode):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.path, target, follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode) & 0o777
        else:
            continue  # sockets, fifos and devices are not build inputs
        os.chown(target, uid, gid)
        os.chmod(target, chmod if chmod is not None else mode)


def _merge_archive(archive: Path, destination: Path, uid_offset: int, number: int) -> None:
    scratch = destination.parent / f".sandlot-add-{number}-{destination.name}"
    try:
        unpack(archive, scratch, uid_offset=uid_offset, what=f"ADD {archive.name}")
        destination.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["cp", "-a", f"{scratch}/.", str(destination)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ContextError(f"ADD {archive.name}: {done.stderr.strip()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack_context(archive: Path, target: Path) -> None:
    """A context sent as a tar (plain or gzip) into the new directory `target`."""
    unpack(archive, target, uid_offset=0, what="the build context")


def unpack(archive: Path, target: Path, *, uid_offset: int, what: str) -> None:
    """A tar (plain or gzip) into the new directory `target` with the importer's checks:
    nothing outside `target`, no devices, bounded sizes; owners shifted by `uid_offset`."""
    target.mkdir(parents=True)
    limits = ImportLimits(max_layers=1)
    with archive.open("rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if magic == b"\x1f\x8b" else raw
        budget = ImportBudget(limits)
        try:
            apply_layer(stream, target, uid_offset=uid_offset, budget=budget, layer=what)
        except (ImportRejected, OSError, EOFError, zlib.error) as exc:
            raise ContextError(f"{what} is not a usable tar archive: {exc}") from None


def is_archive(path: Path) -> bool:
    """What ADD unpacks: a local tar, plain or gzip-compressed."""
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(512)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"
