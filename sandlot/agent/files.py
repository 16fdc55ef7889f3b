"""File operations on the sandbox's own file system, answering in the API's terms.

Every function takes an absolute, normalised path (see `resolve`), raises `AgentError`
with a stable code, and describes files as entries:

    {"name", "path", "type": "file" | "dir" | "symlink", "size", "mode", "mtime",
     "symlink_target"}

Entries describe the path itself (lstat): a symlink is reported as a symlink. Operations
act through symlinks like any program in the sandbox would.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Literal

from . import errors
from .errors import AgentError
from .protocol import EntryInfo

_TEMP_SUFFIX = ".sandlot-part"


def default_workdir() -> str:
    return "/root" if os.path.isdir("/root") and os.access("/root", os.X_OK) else "/"


def resolve(path: object, workdir: str) -> str:
    """An absolute, normalised path; relative paths start at `workdir`."""
    if not isinstance(path, str) or not path:
        raise errors.invalid("path must be a non-empty string")
    if "\0" in path:
        raise errors.invalid("path must not contain NUL characters")
    resolved = os.path.normpath(os.path.join(workdir, path))
    # POSIX lets normpath keep a leading "//"; nobody means anything by it here.
    return "/" + resolved.lstrip("/")


def entry_of(path: str, st: os.stat_result, name: str | None = None) -> EntryInfo:
    mode = st.st_mode
    target: str | None = None
    kind: Literal["file", "dir", "symlink"]
    if stat.S_ISLNK(mode):
        kind = "symlink"
        try:
            target = os.readlink(path)
        except OSError:
            target = None
    elif stat.S_ISDIR(mode):
        kind = "dir"
    else:
        kind = "file"
    return {
        "name": name if name is not None else (os.path.basename(path) or "/"),
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": stat.S_IMODE(mode),
        "mtime": st.st_mtime,
        "symlink_target": target,
    }


def stat_entry(path: str) -> EntryInfo:
    try:
        return entry_of(path, os.lstat(path))
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None


def list_dir(path: str, depth: int = 1) -> list[EntryInfo]:
    """Entries under `path`, sorted by name, each directory followed by its own entries
    down to `depth` levels (1: only the directory's children). Symlinked directories are
    listed, not entered; unreadable subdirectories are listed without their contents.
    """
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            raise errors.operation_failed("not a directory", path)
        entries: list[EntryInfo] = []
        _walk(path, depth, entries)
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None
    return entries


def _walk(directory: str, depth: int, entries: list[EntryInfo]) -> None:
    with os.scandir(directory) as it:
        items = sorted(it, key=lambda item: item.name)
    for item in items:
        path = os.path.join(directory, item.name)
        try:
            st = item.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we looked
        entry = entry_of(path, st, item.name)
        entries.append(entry)
        if depth > 1 and entry["type"] == "dir":
            with contextlib.suppress(OSError):
                _walk(path, depth - 1, entries)


def make_dir(path: str, parents: bool = False) -> EntryInfo:
    """Create a directory; with `parents`, also its missing parents and no error if it exists."""
    try:
        if parents:
            os.makedirs(path, exist_ok=True)
        else:
            os.mkdir(path)
    except FileExistsError:
        message = f"already exists{' and is not a directory' if parents else ''}: {path}"
        raise AgentError(errors.FILE_EXISTS, message, {"path": path}) from None
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None
    return stat_entry(path)


def remove(path: str, recursive: bool = False) -> None:
    """Remove a file, a symlink (not its target) or a directory (non-empty only if recursive)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
        elif recursive:
            import shutil

            shutil.rmtree(path)
        else:
            os.rmdir(path)
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None


REPLACE_MAX_BYTES = 64 * 1024 * 1024
"""Largest file `replace` reads into the agent's memory."""


def replace_text(path: str, old: str, new: str, count: int | None = None) -> int:
    """Replace `old` by `new` in a text file; returns how many occurrences were replaced.

    `count` None: `old` must occur exactly once. `count` -1: replace every occurrence.
    `count` n > 0: replace the first n. Absent `old` is always an error. Bytes that are
    not UTF-8 pass through untouched.
    """
    if not old:
        raise errors.invalid("old must be a non-empty string")
    if count is not None and count != -1 and count < 1:
        raise errors.invalid("count must be -1 (all), a positive number, or absent (exactly one)")
    fd = open_for_read(path)  # a FIFO would block the agent for good
    try:
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size > REPLACE_MAX_BYTES:
                raise errors.operation_failed(
                    f"larger than {REPLACE_MAX_BYTES} bytes (edit it with a command)", path
                )
            text = f.read(REPLACE_MAX_BYTES + 1).decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None
    found = text.count(old)
    if found == 0:
        raise AgentError(
            errors.FILE_OPERATION_FAILED,
            f"text to replace not found: {path}",
            {"path": path, "reason": "not found", "occurrences": 0},
        )
    if count is None and found > 1:
        raise AgentError(
            errors.FILE_OPERATION_FAILED,
            f"text to replace occurs {found} times, expected once: {path}",
            {"path": path, "reason": "ambiguous", "occurrences": found},
        )
    replaced = found if count is None or count == -1 else min(count, found)
    writer = AtomicWriter(path)
    try:
        writer.write(text.replace(old, new, replaced).encode("utf-8", "surrogateescape"))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return replaced


def open_for_read(path: str) -> int:
    """A file descriptor on the regular file at `path`."""
    try:
        # Non-blocking open: a FIFO must not stall the whole agent.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise errors.from_oserror(exc, path) from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    reason = "is a directory" if stat.S_ISDIR(mode) else "not a regular file"
    raise errors.operation_failed(reason, path)


class AtomicWriter:
    """Writes a file under a temporary name beside it, renamed into place on commit.

    A failed or abandoned write leaves nothing behind. Replacing a file keeps its
    permission bits and owner unless `mode` says otherwise; writing to a symlink
    replaces the file it points to.
    """

    def __init__(self, path: str, mode: int | None = None) -> None:
        self.path = path
        target = os.path.realpath(path) if os.path.islink(path) else path
        self._target = target
        if os.path.isdir(target):
            raise errors.operation_failed("is a directory", path)
        parent = os.path.dirname(target)
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:
            raise errors.operation_failed("not a directory", parent) from None
        except OSError as exc:
            raise errors.from_oserror(exc, parent) from None
        try:
            existing: os.stat_result | None = os.stat(target)
        except OSError:
            existing = None
        name = f".{os.path.basename(target)[:200]}.{os.urandom(4).hex()}{_TEMP_SUFFIX}"
        self._temp = os.path.join(parent, name)
        try:
            self._fd: int | None = os.open(
                self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            raise errors.from_oserror(exc, path) from None
        try:
            if mode is not None:
                os.fchmod(self._fd, mode & 0o7777)
            elif existing is not None:
                os.fchmod(self._fd, stat.S_IMODE(existing.st_mode))
                with contextlib.suppress(OSError):
                    os.fchown(self._fd, existing.st_uid, existing.st_gid)
        except OSError as exc:
            self.abort()
            raise errors.from_oserror(exc, path) from None

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "write after commit or abort"
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise errors.from_oserror(exc, self.path) from None

    def commit(self) -> EntryInfo:
        """Move the written file into place; returns its entry."""
        assert self._fd is not None, "commit after commit or abort"
        fd, self._fd = self._fd, None
        try:
            os.close(fd)
            os.rename(self._temp, self._target)
        except OSError as exc:
            self.abort()
            raise errors.from_oserror(exc, self.path) from None
        return stat_entry(self._target)

    def abort(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(self._temp)
