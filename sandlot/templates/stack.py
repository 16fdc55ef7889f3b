"""Reading a stack of layers the way overlayfs will show it, without mounting it.

Steps that run on the host (COPY, ADD, WORKDIR) write a new layer whose parent
directories must look like the ones below (an upper directory's owner and mode win
in the merged view), and need to know which user a name means in the stack's
/etc/passwd. Paths are never followed through symlinks: every lookup is by lstat, one
component at a time, so a layer cannot point a host-side step outside the template.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

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
    parts = PurePosixPath("/", path).parts[1:]
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


def make_parents(new_root: Path, layers: tuple[Path, ...], path: str, owner: int) -> Path:
    """Create `path`'s directories inside the new layer `new_root`, each with the owner and
    mode it has below (new ones: 0755, `owner`); returns the directory on the host.
    A non-directory below in the way is an error, as it would be in a shell."""
    target = new_root
    inside = PurePosixPath("/")
    for part in PurePosixPath("/", path).parts[1:]:
        target = target / part
        inside = inside / part
        below = lookup(layers, str(inside))
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise NotADirectoryError(f"{inside} is not a directory")
        if target.is_dir():
            continue
        if below is not None:
            st = os.lstat(below)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"{inside} is not a directory in the template")
            target.mkdir()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
        else:
            target.mkdir(mode=0o755)
            os.chown(target, owner, owner)
    return target


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
