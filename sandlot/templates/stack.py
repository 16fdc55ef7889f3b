"""Reading a stack of layers the way overlayfs will show it, without mounting it.

Steps that run on the host (COPY, ADD, WORKDIR) write a new layer whose parent
directories must look like the ones below (an upper directory's owner and mode win
in the merged view), and need to know which user a name means in the stack's
/etc/passwd. Paths are never followed through symlinks and `..` never climbs above the root: reads
of lower layers go by lstat, one component at a time, and writes into the new layer go
through the kernel's beneath-the-root lookups (`sandlot.beneath`), so a layer cannot
point a host-side step outside the template.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from sandlot.beneath import DIR_FLAGS, STRICT, inside, openat2

OPAQUE_XATTR = "trusted.overlay.opaque"
"""Set to `y` on a directory that hides what lower layers hold under the same path."""


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs marks a deleted path with a 0:0 character device of its name."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def lookup(layers: tuple[Path, ...], path: str) -> Path | None:
    """The file that `path` (absolute, inside the sandbox) names in the merged view of
    `layers` (top first), or None. Symlinks among its parents make it None too."""
    parts = _parts(path)
    if not parts:
        return layers[0] if layers else None
    for layer in layers:
        hidden = False
        node = layer
        for depth, part in enumerate(parts):
            node = node / part
            try:
                st = os.lstat(node)
            except OSError:
                break
            if is_whiteout(st):
                hidden = True
                break
            last = depth == len(parts) - 1
            if last:
                return node
            if not stat.S_ISDIR(st.st_mode):
                hidden = True  # a file or symlink in the way: nothing lower shows through
                break
            if _is_opaque(node):
                # This directory hides everything below it; only this layer can answer.
                return _within(node, parts[depth + 1 :])
        if hidden:
            return None
    return None


def _within(directory: Path, rest: tuple[str, ...]) -> Path | None:
    node = directory
    for depth, part in enumerate(rest):
        node = node / part
        try:
            st = os.lstat(node)
        except OSError:
            return None
        if is_whiteout(st) or (depth < len(rest) - 1 and not stat.S_ISDIR(st.st_mode)):
            return None
    return node


def make_parents(new_root: Path, layers: tuple[Path, ...], path: str, owner: int) -> int:
    """Create `path`'s directories inside the new layer `new_root`, each with the owner and
    mode it has below (new ones: 0755, `owner`); returns an open descriptor of the last
    one (the caller closes it). Each step is a kernel lookup that refuses symlinks and
    `..`, so nothing placed in the layer can send the walk elsewhere. A non-directory in
    the way is an error, as it would be in a shell."""
    fd = os.open(new_root, DIR_FLAGS)
    here = PurePosixPath("/")
    try:
        for part in _parts(path):
            here = here / part
            try:
                child = _open_dir(fd, part, here)
            except FileNotFoundError:
                child = _make_dir(fd, part, here, _like_below(layers, here, owner))
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _like_below(layers: tuple[Path, ...], here: PurePosixPath, owner: int) -> tuple[int, int, int]:
    """The uid, gid and mode a new directory takes: those of the one below, if any."""
    below = lookup(layers, str(here))
    if below is None:
        return owner, owner, 0o755
    st = os.lstat(below)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{here} is not a directory in the template")
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def _make_dir(parent: int, part: str, here: PurePosixPath, like: tuple[int, int, int]) -> int:
    uid, gid, mode = like
    os.mkdir(part, mode=0o700, dir_fd=parent)
    child = _open_dir(parent, part, here)
    os.fchown(child, uid, gid)
    os.fchmod(child, mode)
    return child


def open_dir(parent: int, path: str, shown: PurePosixPath) -> int:
    """An existing directory beneath the descriptor `parent`, with no symlink on the way;
    `shown` is what an error calls it (its path inside the sandbox)."""
    return _open_dir(parent, inside(path), shown)


def _open_dir(parent: int, relative: str, shown: PurePosixPath) -> int:
    try:
        return openat2(parent, relative, DIR_FLAGS, resolve=STRICT)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
            raise NotADirectoryError(f"{shown} is not a directory") from None
        raise


def _parts(path: str) -> tuple[str, ...]:
    relative = inside(path)
    return () if relative == "." else PurePosixPath(relative).parts


def resolve_owner(layers: tuple[Path, ...], spec: str) -> tuple[int, int]:
    """`user[:group]` (names or numbers) as container ids, read from the stack's own
    /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    uid, primary = _passwd_entry(layers, user)
    if not group:
        return uid, primary
    if group.isdigit():
        return uid, int(group)
    for fields in _entries(layers, "/etc/group"):
        if fields[0] == group:
            return uid, int(fields[2])
    raise LookupError(f"no group {group!r} in the template's /etc/group")


def _passwd_entry(layers: tuple[Path, ...], user: str) -> tuple[int, int]:
    if user.isdigit():
        uid = int(user)
        for fields in _entries(layers, "/etc/passwd"):
            if fields[2] == user:
                return uid, int(fields[3])
        return uid, uid
    for fields in _entries(layers, "/etc/passwd"):
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LookupError(f"no user {user!r} in the template's /etc/passwd")


def _entries(layers: tuple[Path, ...], path: str) -> list[list[str]]:
    """Rows of a passwd-style file whose id fields (2 and, for passwd, 3) are numbers."""
    numeric = (2, 3) if path.endswith("passwd") else (2,)
    found = lookup(layers, path)
    if found is None or not found.is_file() or found.is_symlink():
        return []
    rows = []
    for line in found.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and all(fields[i].isdigit() for i in numeric):
            rows.append(fields)
    return rows
