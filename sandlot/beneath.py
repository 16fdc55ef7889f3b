"""Tenant-named paths on the host, resolved beneath their root by the kernel.

Code that runs as root on the host and touches a path a tenant chose (a Sandlotfile's
COPY destination, a build-context member, a `file=` query) must never reach outside the
tree that path belongs to. String checks cannot promise that: a symlink placed a moment
earlier, or a `..` kept by a join, walks out of it. `openat2(2)` lets the kernel do the
walk under rules we pick, so every lookup here goes through it:

- `IN_ROOT`, for reading a tenant's tree: symlinks are followed as if the root were `/`,
  `..` stops at the root, magic links (`/proc/self/fd/N`) and mount crossings are refused.
- `STRICT`, for writing into a tree on the tenant's behalf: no symlink anywhere on the
  way and no `..` above the root, so nothing the tenant placed can redirect a write.

Python has no wrapper for openat2, so it is called through ctypes (syscall 437 on every
architecture since Linux 5.6). Every other step takes the directory descriptor these
lookups return (`os.mkdir(name, dir_fd=…)`, `os.symlink(…, dir_fd=…)`), never a path.
"""

from __future__ import annotations

import ctypes
import errno
import os
import posixpath
import stat
from pathlib import Path

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV
"""Follow symlinks as if the root were `/`, never out of it: for reading a tenant's tree."""
STRICT = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV
"""No symlink on the way and nothing above the root: for writing into a tree."""

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SYS_OPENAT2 = 437
_RETRIES = 16
"""openat2 answers EAGAIN with RESOLVE_IN_ROOT when a rename raced the walk."""


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = IN_ROOT) -> int:
    """The descriptor of `path` looked up from `dirfd` under `resolve`'s rules."""
    # The kernel refuses a mode without O_CREAT or O_TMPFILE (whose bits hold O_DIRECTORY's).
    creates = bool(flags & os.O_CREAT) or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags | os.O_CLOEXEC, mode if creates else 0, resolve)
    encoded = os.fsencode(path)
    for _ in range(_RETRIES):
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, encoded, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), path)
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), path)


def inside(path: str) -> str:
    """A path as a sandbox reads it, relative to its root: `/a/../../b/` is `b`, and `/`
    is `.`. `..` never climbs above the root, as in the sandbox itself."""
    if "\x00" in path:
        raise ValueError("a path may not hold a NUL byte")
    clean = posixpath.normpath(posixpath.join("/", path))
    relative = clean.lstrip("/")
    return relative or "."


class Beneath:
    """An open directory that tenant-named paths are resolved beneath.

    Holding the directory open (not its name) means a rename or swap of the path
    after the start changes nothing about where lookups land.
    """

    def __init__(self, root: Path | str) -> None:
        self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open(self, path: str, flags: int, mode: int = 0o644, resolve: int = IN_ROOT) -> int:
        return openat2(self.fd, inside(path), flags, mode, resolve)

    def lstat(self, path: str, resolve: int = STRICT) -> os.stat_result:
        """The entry itself (a symlink is not followed at the last step)."""
        fd = self.open(path, os.O_PATH | os.O_NOFOLLOW, resolve=resolve)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def read_bytes(self, path: str, limit: int, resolve: int = IN_ROOT) -> bytes:
        """A regular file's content, refused if larger than `limit` bytes. FIFOs and
        devices are refused before they are read (a FIFO would block the reader)."""
        fd = self.open(path, os.O_RDONLY | os.O_NONBLOCK, resolve=resolve)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", path)
            if st.st_size > limit:
                raise FileTooLarge(path, st.st_size, limit)
            chunks = []
            left = limit + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
            if len(data) > limit:
                raise FileTooLarge(path, len(data), limit)
            return data
        finally:
            os.close(fd)


class FileTooLarge(ValueError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(f"{path!r} is {size} bytes; at most {limit} are read")
        self.size = size
        self.limit = limit
