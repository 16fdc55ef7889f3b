"""Who a process runs as, when the caller names a user instead of the agent's own root.

A user is given as a name or a numeric uid, optionally with a group after a colon
(`alice`, `1000`, `alice:staff`, `1000:1000`), and looked up in the sandbox's own
/etc/passwd and /etc/group, so users created inside the sandbox (`useradd`) count at
once. A numeric uid needs no passwd entry (as with `docker run --user`): it then runs
with the same number as its group, no supplementary groups, and `/` as its home.

The switch itself happens in the child between fork and exec (subprocess's `user`,
`group` and `extra_groups`); this module only decides the ids and what follows from
them: the environment a login would set, and whether the user may enter a directory.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass

from . import errors

MAX_SPEC_LENGTH = 64
MAX_ID = 2**32 - 2
"""(uid_t)-1 means "unchanged" to setreuid, so the largest usable id is one below it."""


@dataclass(frozen=True)
class RunAs:
    name: str
    """The passwd name, or the number itself for a uid without an entry."""
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Supplementary groups; empty drops the agent's own."""
    home: str

    def environment(self) -> dict[str, str]:
        """What a login sets for this user; nothing for root, whose agent env already fits."""
        if self.uid == 0:
            return {}
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def can_enter(self, path: str) -> bool:
        """Whether the user may chdir to `path`: search permission on it and on every
        directory above it (mode bits only; the agent's root would pass any check)."""
        if self.uid == 0:
            return True
        groups = {self.gid, *self.groups}
        current = "/"
        for part in os.path.realpath(path).split("/"):
            current = os.path.join(current, part)
            try:
                st = os.stat(current)
            except OSError:
                return False
            if not stat.S_ISDIR(st.st_mode) or not _may_search(st, self.uid, groups):
                return False
        return True


def resolve(spec: object) -> RunAs | None:
    """The identity named by `spec`; None (no spec) keeps the agent's own."""
    if spec is None:
        return None
    if not isinstance(spec, str) or not spec or len(spec) > MAX_SPEC_LENGTH or "\0" in spec:
        raise errors.invalid(f"user must be a name or uid of 1 to {MAX_SPEC_LENGTH} characters")
    user, _, group = spec.partition(":")
    if not user or (":" in spec and not group):
        raise errors.invalid(f"user must be NAME, UID, NAME:GROUP or UID:GID, not {spec!r}")
    entry = _passwd_entry(user)
    if entry is None:
        uid = _number(user)
        name, home, gid = str(uid), "/", uid
    else:
        uid, name, home, gid = entry.pw_uid, entry.pw_name, entry.pw_dir or "/", entry.pw_gid
    if group:
        gid = _group_id(group)
    groups = tuple(os.getgrouplist(name, gid)) if entry is not None else ()
    return RunAs(name=name, uid=uid, gid=gid, groups=groups, home=home)


def _passwd_entry(user: str) -> pwd.struct_passwd | None:
    """The user's passwd entry; None for a uid without one; an error for an unknown name."""
    try:
        return pwd.getpwuid(_number(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return None
        raise errors.invalid(f"no user {user!r} in the sandbox's /etc/passwd") from None


def _group_id(group: str) -> int:
    if group.isdigit():
        return _number(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise errors.invalid(f"no group {group!r} in the sandbox's /etc/group") from None


def _number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > MAX_ID:
        raise errors.invalid(f"not a user or group id: {text!r}")
    return int(text)


def _may_search(st: os.stat_result, uid: int, groups: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)
