"""Pinned network namespaces: a sandbox's namespace kept at a path by a bind mount of its
nsfs file, so the host can enter it (to set up its interface) by name rather than by a
pid that changes with every restore. The files live in /run/netns, which is made a
shared mount like `ip netns` does, so an unmount here propagates into mount namespaces
that copied it.

Entering a namespace changes only the calling thread, so work inside one runs on a
thread of its own that is thrown away afterwards: a thread that failed to come back can
never serve other work in the wrong namespace.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
EINVAL = 22

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _ensure_shared_dir() -> None:
    """Like `ip netns`: make /run/netns a shared mount, binding it onto itself only when
    it is not a mount point yet (making a non-mount-point shared fails with EINVAL)."""
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = str(NETNS_DIR).encode()
    if _libc.mount(b"none", target, None, MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != EINVAL:
        _check(-1, "share /run/netns")
    _check(_libc.mount(target, target, b"none", MS_BIND, None), "bind /run/netns")
    _check(_libc.mount(b"none", target, None, MS_SHARED | MS_REC, None), "share /run/netns")


def _on_fresh_thread(work: Callable[[], T]) -> T:
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="sandlot-netns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def pin(path: Path, pid: int) -> None:
    """Pin the namespace process `pid` lives in at `path` (replacing what was pinned
    there): how the host keeps a handle on a namespace the sandbox's runtime made."""
    _ensure_shared_dir()
    remove(path)
    path.touch(mode=0o444)
    source = f"/proc/{pid}/ns/net".encode()
    try:
        _check(_libc.mount(source, str(path).encode(), None, MS_BIND, None), "pin netns")
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def run_inside(path: Path, work: Callable[[], T]) -> T:
    """Run `work` on a thread that has entered the namespace at `path`."""

    def enter() -> T:
        fd = os.open(path, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"enter {path}")
        finally:
            os.close(fd)
        return work()

    return _on_fresh_thread(enter)


def remove(path: Path) -> None:
    """Unpin and delete; the namespace goes once nothing else holds it. Idempotent."""
    _libc.umount2(str(path).encode(), MNT_DETACH)
    path.unlink(missing_ok=True)
