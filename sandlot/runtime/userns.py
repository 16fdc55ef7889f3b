"""A user namespace per sandbox, owned by a host uid of that sandbox's alone.

Why the owner matters: the kernel charges what a process in a user namespace spends of
the per-user limits (inotify instances and watches, POSIX message-queue bytes, pending
signals, processes) to its uid in that namespace *and* to the namespace's owner in the
parent, all the way up. runc makes the namespace itself, as root, so every sandbox's
spending met in one place, host root's allowance: 128 `inotify_init` calls in one
sandbox made the call fail in every other sandbox and on the host. Here the namespace is
made by a short-lived helper running as an owner uid allocated to the sandbox (never a
uid the sandbox maps or any host account uses), its maps written by the host, and
handed to runc by path; each sandbox then spends an allowance of its own.

The operator turns it on (`user_namespace_owners`). It takes CAP_SYS_RESOURCE in the
host's namespace: over a namespace root does not own, runc needs it to set a sandbox's
rlimits and CRIU to read them. Otherwise namespaces are runc's, as before, and
`scripts/setup` raises the inotify allowances so the one shared pool is not the 128
instances of a desktop default; message-queue bytes stay shared there.

The namespace is kept by a bind mount of its nsfs file in the sandbox's bundle, so it
goes with the bundle's other mounts on destroy; the owner uid is read back from the
namespace itself (`NS_GET_OWNER_UID`), so a restarted server knows which are taken, and
one is reused only once its sandbox's bundle is gone.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from sandlot.domain.host_values import BackendError
from sandlot.runtime.mounts import bind_mount

OWNER_BASE = 200_000_000
"""The first owner uid: far above the uids sandboxes map (from 100000, 65536 each)."""
OWNER_COUNT = 1_000_000
NS_FILE = "userns"
NS_GET_OWNER_UID = 0xB704
"""ioctl(2) on a namespace file: the uid of its owner (linux/nsfs.h)."""
HELPER_TIMEOUT = 5.0


CAP_SYS_RESOURCE = 24


def has_sys_resource() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (effective), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


class NamespaceOwners:
    """Owner uids in use, one per sandbox with a user namespace of its own."""

    def __init__(self, existing: Iterable[Path] = ()) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()
        self._next = 0
        for ns_file in existing:
            owner = owner_of(ns_file)
            if owner is not None:
                self._used.add(owner)

    def allocate(self) -> int:
        with self._lock:
            for _ in range(OWNER_COUNT):
                owner = OWNER_BASE + self._next
                self._next = (self._next + 1) % OWNER_COUNT
                if owner not in self._used:
                    self._used.add(owner)
                    return owner
        raise BackendError("no user-namespace owner uid is free on this host")

    def release(self, owner: int) -> None:
        with self._lock:
            self._used.discard(owner)

    def __len__(self) -> int:
        return len(self._used)


def owner_of(ns_file: Path) -> int | None:
    """The owner uid of the user namespace bound at `ns_file`; None if none is bound."""
    try:
        fd = os.open(ns_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        answer = fcntl.ioctl(fd, NS_GET_OWNER_UID, b"\0" * 4)
    except OSError:
        return None  # a plain file: nothing was bound there
    finally:
        os.close(fd)
    return int(struct.unpack("I", answer)[0])


def make_user_namespace(ns_file: Path, owner: int, host_base: int, size: int) -> None:
    """Make a user namespace owned by `owner`, mapping ids 0..size-1 to `host_base` on,
    and keep it at `ns_file` (created) once the helper that made it is gone."""
    helper = subprocess.Popen(
        ["unshare", "--user", "sleep", str(int(HELPER_TIMEOUT) * 2)],
        user=owner,
        group=owner,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    try:
        _wait_for_namespace(helper)
        mapping = f"0 {host_base} {size}\n"
        for kind in ("uid_map", "gid_map"):
            Path(f"/proc/{helper.pid}/{kind}").write_text(mapping)
        ns_file.touch(mode=0o600)
        bind_mount(Path(f"/proc/{helper.pid}/ns/user"), ns_file)
    finally:
        helper.kill()
        helper.wait()


def _wait_for_namespace(helper: subprocess.Popen[bytes]) -> None:
    """Until the helper has left the host's user namespace (`unshare` has run)."""
    ours = os.stat("/proc/self/ns/user").st_ino
    deadline = time.monotonic() + HELPER_TIMEOUT
    while time.monotonic() < deadline:
        if helper.poll() is not None:
            raise BackendError("could not make a user namespace for the sandbox")
        try:
            if os.stat(f"/proc/{helper.pid}/ns/user").st_ino != ours:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.0002)
    raise BackendError("making a user namespace for the sandbox timed out")
