"""The sandboxes this server holds an agent connection to, and what it knows of them
beyond the store: who owns each, its environment, when it was last used, who holds it
open, and the lock that serialises its transitions.

The store says what a sandbox is; this says whether the server can talk to it now. A
sandbox is live from the moment its agent answers until it is paused, destroyed or the
server stops; anything that needs it running either finds it here or reconnects.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sandlot.core.host import Host
from sandlot.core.keyed_locks import KeyedLocks
from sandlot.core.logs import LogFollowers
from sandlot.core.models import SandboxView
from sandlot.core.records import Records
from sandlot.core.session import SandboxSession


@dataclass(frozen=True)
class Live:
    """A running sandbox's owner, environment and agent connection."""

    org_id: str
    env: dict[str, str]
    session: SandboxSession
    user: str | None = None
    """Who commands run as when the caller does not say: the template's USER."""


@dataclass(eq=False)
class LiveSandboxes:
    records: Records
    host: Host
    logs: LogFollowers
    _live: dict[str, Live] = field(default_factory=dict, init=False)
    """What the hot path needs, without the store."""
    _locks: KeyedLocks = field(default_factory=KeyedLocks, init=False)
    last_activity: dict[str, float] = field(default_factory=dict, init=False)
    holds: collections.Counter[str] = field(default_factory=collections.Counter, init=False)

    def connected(self, sandbox_id: str) -> Live | None:
        """The sandbox's connection, if it is in service and not closed."""
        live = self._live.get(sandbox_id)
        return None if live is None or live.session.closed else live

    def owner(self, sandbox_id: str) -> str | None:
        live = self._live.get(sandbox_id)
        return live.org_id if live is not None else None

    def add(self, sandbox_id: str, live: Live) -> None:
        """A new sandbox whose agent just answered: in service, and active from now."""
        self._serve(sandbox_id, live)
        self.last_activity[sandbox_id] = time.monotonic()

    async def connect(self, view: SandboxView) -> Live:
        """(Re)open the agent connection of a sandbox that runs on the host."""
        session = await self.host.connect(view.id)
        template, _ = self.records.stack(view.id)
        live = Live(view.org_id, view.env, session, template.user or None)
        self._serve(view.id, live)
        return live

    def _serve(self, sandbox_id: str, live: Live) -> None:
        """In service, its log followed."""
        self._live[sandbox_id] = live
        self.logs.follow(sandbox_id, live.org_id, live.session)

    async def reconnect(self, sandbox_id: str, view: SandboxView | None = None) -> Live:
        return await self.connect(view or self.records.get(None, sandbox_id))

    async def detach(self, sandbox_id: str) -> SandboxSession | None:
        """Take the sandbox's agent connection out of service (before it is paused or
        replaced); the caller closes or quiesces it."""
        live = self._live.pop(sandbox_id, None)
        self.last_activity.pop(sandbox_id, None)
        return live.session if live is not None else None

    async def forget(self, sandbox_id: str) -> None:
        """Out of service for good: its connection closed."""
        session = await self.detach(sandbox_id)
        if session is not None:
            await session.close()

    def lock(self, sandbox_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialises transitions of one sandbox (pause, snapshot, destroy, ...)."""
        return self._locks.hold(sandbox_id)

    def busy(self, sandbox_id: str) -> bool:
        """Whether a transition of the sandbox holds or waits for its lock."""
        return self._locks.busy(sandbox_id)

    @contextlib.contextmanager
    def hold(self, sandbox_id: str) -> Iterator[None]:
        """An interactive client (an SSH session, an attached terminal or stream) is
        connected: the sandbox is not idle while it is, however quiet it is."""
        self.holds[sandbox_id] += 1
        try:
            yield
        finally:
            self.holds[sandbox_id] -= 1
            if not self.holds[sandbox_id]:
                del self.holds[sandbox_id]
            self.touch(sandbox_id)

    def is_live(self, sandbox_id: str) -> bool:
        """Whether the sandbox's agent connection is in service (running, not mid-pause)."""
        return sandbox_id in self._live

    def touch(self, sandbox_id: str) -> None:
        """Record activity that bypasses core (stdin and output of an attachment)."""
        if sandbox_id in self._live:
            self.last_activity[sandbox_id] = time.monotonic()

    def idle_for(self, sandbox_id: str, now: float) -> float:
        """Seconds since the sandbox was last used; 0 for one not connected, which
        must not get an activity record back (it may be gone or mid-transition)."""
        if self.connected(sandbox_id) is None:
            return 0.0
        return now - self.last_activity.setdefault(sandbox_id, now)

    async def close(self) -> None:
        """Drop every connection; the sandboxes keep running, to be adopted next start."""
        for live in self._live.values():
            await live.session.close()
        self._live.clear()
        await self.logs.close()
