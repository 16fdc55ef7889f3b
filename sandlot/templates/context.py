"""The build context: the directory COPY and ADD read from, minus what `.dockerignore` hides.

Sources are matched inside the context only (no `..`, no absolute paths), read through
the kernel with no symlink on the way, and symlinks are copied as symlinks, never
followed, so a context cannot smuggle host files into a template. Writes into the new
layer go the same way (see `place`), so a context cannot steer them onto host files.
The digest of what a COPY reads is part of its cache key: change one byte of an input
and that step and every later one run again.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import shutil
import stat
import zlib
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, cast

from sandlot.beneath import DIR_FLAGS, STRICT, Beneath
from sandlot.dockerignore import IGNORE_FILE, IgnoreRules
from sandlot.templates.import_limits import ImportBudget, ImportLimits, ImportRejected
from sandlot.templates.layer_tar import COPY_CHUNK, apply_layer
from sandlot.templates.stack import is_whiteout, open_dir


class ContextError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    """One file, directory or symlink a COPY takes, and where it lands under the
    destination."""

    path: Path
    target: PurePosixPath


class BuildContext:
    """The uploaded context, opened once: every source is read through the kernel's
    beneath-the-root lookups with no symlink on the way, so a member named through a
    symlinked directory (`sub -> /etc`, then `sub/passwd`) is refused, not followed."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tree = Beneath(self.root)
        self.ignore = IgnoreRules.read(self.root / IGNORE_FILE)

    def close(self) -> None:
        self.tree.close()

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
                if stat.S_ISDIR(self._lstat(pattern, match).st_mode):
                    found.extend(self._tree(match))
                    continue
                into_dir = into_dir or len(matches) > 1
                name = PurePosixPath(relative.name) if into_dir else PurePosixPath(".")
                found.append(Source(match, name))
        return found

    def _lstat(self, pattern: str, match: Path) -> os.stat_result:
        """The match itself, refused if any directory on its way is a symlink."""
        try:
            return self.tree.lstat(self._rel(match))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
                raise ContextError(
                    f"{pattern!r} goes through a symlink in the build context; "
                    "name the files the link points to instead"
                ) from None
            raise

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
            hits = [candidate] if os.path.lexists(candidate) and not self.ignored(clean) else []
        return hits

    def _tree(self, directory: Path) -> list[Source]:
        """A directory's contents (not the directory itself, as in Docker). os.walk
        never descends into a symlinked directory, and `directory` was checked to have
        no symlink on its way."""
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

    def open(self, source: Source) -> int:
        """A descriptor of the source itself (O_PATH for a symlink), never followed."""
        relative = self._rel(source.path)
        st = self.tree.lstat(relative)
        if stat.S_ISREG(st.st_mode):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
            return self.tree.open(relative, flags, resolve=STRICT)
        return self.tree.open(relative, os.O_PATH | os.O_NOFOLLOW, resolve=STRICT)

    def readlink(self, source: Source) -> str:
        relative = PurePosixPath(self._rel(source.path))
        parent = self.tree.open(str(relative.parent), DIR_FLAGS, resolve=STRICT)
        try:
            return os.readlink(relative.name, dir_fd=parent)
        finally:
            os.close(parent)


def digest(context: BuildContext, sources: list[Source]) -> str:
    """What the files say, not when they were touched: paths, modes and contents."""
    h = hashlib.sha256()
    for source in sources:
        fd = context.open(source)
        try:
            st = os.fstat(fd)
            h.update(
                f"{source.target}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode()
            )
            if stat.S_ISLNK(st.st_mode):
                h.update(context.readlink(source).encode())
            elif stat.S_ISREG(st.st_mode):
                # Its length first: without it, one file's bytes could pass for the
                # next one's header, and two different contexts hash alike.
                h.update(f"{st.st_size}\0".encode())
                while chunk := os.read(fd, 1 << 20):
                    h.update(chunk)
        finally:
            os.close(fd)
    return h.hexdigest()


@dataclass(frozen=True)
class Owner:
    """Who a placed entry belongs to on the host, and its mode if COPY --chmod set one."""

    uid: int
    gid: int
    chmod: int | None = None


def place(
    context: BuildContext,
    sources: list[Source],
    destination: int,
    *,
    at: PurePosixPath,
    name: str | None,
    owner: Owner,
    extract: bool = False,
    uid_offset: int = 0,
    scratch: Path,
) -> None:
    """Copy `sources` beneath the open directory `destination` (in the new layer), owned
    by `owner`; `at` is that directory's path inside the sandbox, for errors. With
    `name`, the one source lands under that name instead of its own.
    Regular files, directories and symlinks only. With `extract` (ADD), tar archives are
    unpacked instead, keeping their owners (shifted by `uid_offset`); `scratch` is a host
    directory to unpack them in first.

    Every entry is made relative to its parent's descriptor, and parents are looked up
    with no symlink on the way: a symlink this COPY placed (`a/lnk -> /`) is an entry of
    the layer, never a way through it (`b/lnk/f` is refused)."""
    for number, source in enumerate(sources):
        where = PurePosixPath(name) if name and str(source.target) == "." else source.target
        spot = _Spot(destination, at)
        if extract and is_archive(context, source):
            # An archive unpacks into the destination itself, as in Docker.
            into = spot.ensure_dir(PurePosixPath(name or "."), Owner(owner.uid, owner.gid))
            try:
                unpacked = scratch / f".sandlot-add-{number}"
                _merge_archive(context, source, into, at / (name or ""), uid_offset, unpacked)
            finally:
                os.close(into)
            continue
        fd = context.open(source)
        try:
            st = os.fstat(fd)
            mode = owner.chmod if owner.chmod is not None else stat.S_IMODE(st.st_mode) & 0o7777
            if stat.S_ISDIR(st.st_mode):
                os.close(spot.ensure_dir(where, replace(owner, chmod=mode)))
            elif stat.S_ISLNK(st.st_mode):
                spot.put_symlink(where, context.readlink(source), owner)
            elif stat.S_ISREG(st.st_mode):
                spot.put_file(where, fd, replace(owner, chmod=mode & 0o777))
            # sockets, fifos and devices are not build inputs
        finally:
            os.close(fd)


@dataclass(frozen=True)
class _Spot:
    """A directory of the new layer, open, and its path inside the sandbox."""

    fd: int
    at: PurePosixPath

    def parent_of(self, where: PurePosixPath) -> int:
        parent = str(where.parent)
        if parent == ".":
            return os.dup(self.fd)
        return open_dir(self.fd, parent, self.at / where.parent)

    def ensure_dir(self, where: PurePosixPath, owner: Owner) -> int:
        if str(where) == ".":
            return os.dup(self.fd)  # made by make_parents, like the template's own
        parent = self.parent_of(where)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(where.name, mode=0o700, dir_fd=parent)
            fd = open_dir(parent, where.name, self.at / where)
        finally:
            os.close(parent)
        os.fchown(fd, owner.uid, owner.gid)
        os.fchmod(fd, owner.chmod if owner.chmod is not None else 0o755)
        return fd

    def put_symlink(self, where: PurePosixPath, link: str, owner: Owner) -> None:
        parent = self.parent_of(where)
        try:
            _clear(parent, where.name)
            os.symlink(link, where.name, dir_fd=parent)
            os.chown(where.name, owner.uid, owner.gid, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)

    def put_file(self, where: PurePosixPath, source: int, owner: Owner) -> None:
        parent = self.parent_of(where)
        try:
            _clear(parent, where.name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(where.name, flags, 0o600, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            while chunk := os.read(source, COPY_CHUNK):
                os.write(out, chunk)
            os.fchown(out, owner.uid, owner.gid)
            os.fchmod(out, owner.chmod if owner.chmod is not None else 0o644)
        finally:
            os.close(out)

    def put_whiteout(self, where: PurePosixPath) -> None:
        parent = self.parent_of(where)
        try:
            _clear(parent, where.name)
            os.mknod(where.name, stat.S_IFCHR, 0, dir_fd=parent)
        finally:
            os.close(parent)


def _clear(parent: int, name: str) -> None:
    """Make room for a new entry: what is there goes, unless it is a directory."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)


def _merge_archive(
    context: BuildContext,
    source: Source,
    into: int,
    at: PurePosixPath,
    uid_offset: int,
    scratch: Path,
) -> None:
    """Unpack with the importer's checks into a fresh host directory, then place what it
    holds beneath `into` entry by entry, each keeping the owner the archive gave it."""
    try:
        fd = context.open(source)
        with os.fdopen(fd, "rb") as archive:
            unpack(archive, scratch, uid_offset=uid_offset, what=f"ADD {source.path.name}")
        with contextlib.closing(BuildContext(scratch)) as unpacked:
            for entry in unpacked.sources((".",), "/"):
                st = os.lstat(entry.path)
                if is_whiteout(st):
                    _Spot(into, at).put_whiteout(entry.target)
                    continue
                owner = Owner(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
                place(unpacked, [entry], into, at=at, name=None, owner=owner, scratch=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def unpack_context(archive: Path, target: Path) -> None:
    """A context sent as a tar (plain or gzip) into the new directory `target`."""
    with archive.open("rb") as raw:
        unpack(raw, target, uid_offset=0, what="the build context")


def unpack(raw: IO[bytes], target: Path, *, uid_offset: int, what: str) -> None:
    """A tar (plain or gzip) into the new directory `target` with the importer's checks:
    nothing outside `target`, no devices, bounded sizes; owners shifted by `uid_offset`."""
    target.mkdir(parents=True)
    limits = ImportLimits(max_layers=1)
    magic = raw.read(2)
    raw.seek(0)
    stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw)) if magic == b"\x1f\x8b" else raw
    budget = ImportBudget(limits)
    try:
        apply_layer(stream, target, uid_offset=uid_offset, budget=budget, layer=what)
    except (ImportRejected, OSError, EOFError, zlib.error) as exc:
        raise ContextError(f"{what} is not a usable tar archive: {exc}") from None


def is_archive(context: BuildContext, source: Source) -> bool:
    """What ADD unpacks: a local tar, plain or gzip-compressed."""
    fd = context.open(source)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, 512, 0)
    finally:
        os.close(fd)
    return head[:2] == b"\x1f\x8b" or head[257:262] == b"ustar"
