"""Zombie reaping: the agent is PID 1, so every orphan in the sandbox ends up its child.

One SIGCHLD handler collects every exited child with `waitpid(-1, WNOHANG)` and hands
the status to whoever watches that pid; children nobody watches (orphans adopted from
double-forking daemons) are simply reaped. Nothing else in the agent may call waitpid,
which is why processes are never started through asyncio's subprocess machinery: its
child watcher would race this reaper for exit statuses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4


class Reaper:
    def __init__(self) -> None:
        self._watchers: dict[int, Callable[[int], None]] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        if os.getpid() != 1:
            become_subreaper()
        become_undumpable()
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()

    def watch(self, pid: int, on_exit: Callable[[int], None]) -> None:
        """Call `on_exit(wait_status)` when `pid` exits.

        Register right after starting the child, before yielding to the event loop: the
        reaper runs only from the loop, so it cannot have collected the pid yet.
        """
        self._watchers[pid] = on_exit

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            on_exit = self._watchers.pop(pid, None)
            if on_exit is None:
                continue
            try:
                on_exit(status)
            except Exception:
                log.exception("exit handler for pid %d failed", pid)


def become_subreaper() -> None:
    """Adopt orphans like PID 1 does, for when the agent runs under another init (or on a host).

    Best effort: without it, orphans go to the real init, which reaps them anyway.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("could not become a child subreaper; orphans go to init")


def become_undumpable() -> None:
    """Another process of the sandbox, its root included (which lacks CAP_SYS_PTRACE),
    can then neither ptrace the agent nor take its descriptors with pidfd_getfd, and so
    cannot speak to the host on the agent's connection. Commands the agent starts exec
    and are dumpable again."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("could not make the agent undumpable")
