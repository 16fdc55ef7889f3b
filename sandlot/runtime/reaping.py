"""Make the server the reaper of its sandboxes' init processes.

`runc run --detach` exits once the sandbox starts, orphaning the sandbox's init. Left
to the host's PID 1, a destroyed sandbox lingers as a zombie for as long as that init
takes to notice. As a child subreaper the server inherits those orphans and reaps each
one by pid when it destroys the sandbox (never with waitpid(-1), which would steal the
exit statuses asyncio waits for).

gVisor leaves more behind: under the systrap platform every process inside has a stub
process on the host, a child of the sandbox's kernel (the sentry). When the sentry goes,
its stubs fall to the server too, one per process the sandbox ran, and must be collected
or each gVisor sandbox would leak host pids (a fork bomb inside, thousands).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import time

PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def become_subreaper() -> None:
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


async def reap(pid: int, timeout: float = 5.0) -> None:
    """Wait for `pid` to exit and collect it if it is ours; someone else's is only awaited."""
    deadline = time.monotonic() + timeout
    while not _collected(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"sandbox init {pid} did not exit")
        await asyncio.sleep(0.005)


def _collected(pid: int) -> bool:
    """Non-blocking: has `pid` exited (and been reaped, if it was ours to reap)?"""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done != 0
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}") or is_zombie(pid)


def reap_orphans(uids: range) -> int:
    """Collect the zombie children of this process that ran as one of `uids`; returns
    how many.

    Only for processes sandboxes left behind: the server runs nothing of its own as a
    sandbox's uid, so no exit status asyncio waits for is taken.
    """
    collected = 0
    for pid in _zombie_children(uids):
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            collected += done != 0
    return collected


def _zombie_children(uids: range) -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                state, ppid = stat.read().rsplit(")", 1)[1].split()[:2]
            if state != "Z" or ppid != me:
                continue
            # The real uid from status: /proc/PID itself is root's for undumpable ones.
            with open(f"/proc/{entry.name}/status") as status:
                uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
        except (OSError, ValueError, StopIteration):
            continue  # gone meanwhile
        if uid in uids:
            found.append(int(entry.name))
    return found


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
