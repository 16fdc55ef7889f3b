"""Shift a root filesystem's ownership into the sandboxes' user-namespace range.

Sandboxes map container uid 0..65535 to host uid USERNS_HOST_BASE.. ; a template
stored with host-root ownership would look like `nobody` inside. Shifting once at build
time lets every sandbox share the template unchanged as a read-only lower layer.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def shift_ownership(root: Path, offset: int) -> int:
    """Add `offset` to every uid/gid under `root`; returns the number of entries changed.

    chown clears setuid/setgid bits on regular files, so the mode is put back after.
    """
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _shift_one(os.path.join(dirpath, name), offset)
            count += 1
    _shift_one(str(root), offset)
    return count + 1


def _shift_one(path: str, offset: int) -> None:
    st = os.lstat(path)
    if st.st_uid >= offset:
        return
    os.lchown(path, st.st_uid + offset, st.st_gid + offset)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        os.chmod(path, stat.S_IMODE(st.st_mode))
