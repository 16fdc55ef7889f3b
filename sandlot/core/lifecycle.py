"""Pause and resume, idle pauses and lifetimes.

A paused sandbox is held one of two ways. "checkpoint" dumps its processes to disk with
CRIU and stops them, so it costs no memory or CPU and outlives the server; "freeze"
stops them in the cgroup freezer, keeping their memory, and is what a host without a
usable CRIU gets (the sandbox's `pauseMode` says which, and a checkpoint that fails
falls back to a freeze with the reason recorded, never silently).

Crash safety rests on reconciliation reading the host: a pause is persisted before it
is acted on and a resume after, and `settle` turns whatever a crash left (a dump or a
restore cut short) into one whole state, old or new.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.live import LiveSandboxes
from sandlot.core.models import SandboxView
from sandlot.core.reconciliation import Recovery, recovery
from sandlot.core.records import Records
from sandlot.core.transitions import StatusWriter
from sandlot.domain.host_values import BackendError, RuntimeStatus
from sandlot.domain.states import (
    CHECKPOINT,
    FREEZE,
    SandboxStatus,
    check_transition,
    require_running,
)
from sandlot.errors import (
    InvalidStateError,
    SandboxNotFoundError,
    SandboxUnavailableError,
    SandlotError,
)

log = logging.getLogger(__name__)

IDLE_PAUSE_WAIT = 1.0
"""Seconds a supervision pass waits for the idle pauses it started before moving on."""

_NOT_PAUSED: dict[str, Any] = {"pause_mode": None, "paused_at": None}


@dataclass(eq=False, kw_only=True)
class Lifecycle:
    records: Records
    status: StatusWriter
    host: Host
    live: LiveSandboxes
    pause_mode: str = "auto"
    auto_resume: bool = True
    _idle_pauses: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)

    def mode(self, sandbox_id: str) -> str:
        """How the sandbox's pauses are held: checkpoints wherever its backend can."""
        if self.pause_mode == FREEZE or not self.host.capabilities(sandbox_id).checkpoint:
            return FREEZE
        return CHECKPOINT

    # ---- pause and resume ----------------------------------------------------------------

    async def pause(
        self, org_id: str | None, sandbox_id: str, reason: str = "paused"
    ) -> SandboxView:
        async with self.live.lock(sandbox_id):
            view = self.records.get(org_id, sandbox_id)
            if view.status is SandboxStatus.PAUSED:
                return view
            require_running(sandbox_id, view.status)
            mode = self.mode(sandbox_id)
            self.status.set(
                sandbox_id,
                SandboxStatus.PAUSED,
                reason=reason,
                changes={"pause_mode": mode, "paused_at": datetime.now(UTC)},
                extra={"pauseMode": mode},
            )
            session = await self.live.detach(sandbox_id)
            try:
                if mode == CHECKPOINT:
                    if session is not None:
                        await session.quiesce()
                    await self.host.unplug(sandbox_id)
                    await self.host.checkpoint(sandbox_id)
                else:
                    if session is not None:
                        await session.close()
                    await self.host.freeze(sandbox_id)
            except (BackendError, OSError) as exc:
                if mode == FREEZE:
                    self.status.set(sandbox_id, SandboxStatus.RUNNING, changes=_NOT_PAUSED)
                    await self.live.reconnect(sandbox_id)
                    why = public_reason(exc, f"freezing {sandbox_id}")
                    raise SandboxUnavailableError(f"could not pause {sandbox_id}: {why}") from exc
                why = public_reason(exc, f"checkpointing {sandbox_id}")
                log.warning("checkpoint of %s failed, freezing it instead: %s", sandbox_id, why)
                await self.host.plug(sandbox_id)
                await self.host.freeze(sandbox_id)
                self.records.record(
                    sandbox_id,
                    pause_mode=FREEZE,
                    status_reason=f"{reason}; checkpoint failed, frozen in memory: {why}",
                )
            return self.records.get(org_id, sandbox_id)

    async def resume(
        self, org_id: str | None, sandbox_id: str, reason: str = "resumed"
    ) -> SandboxView:
        async with self.live.lock(sandbox_id):
            view = self.records.get(org_id, sandbox_id)
            if view.status is SandboxStatus.RUNNING:
                return view
            check_transition(sandbox_id, view.status, SandboxStatus.RUNNING)
            try:
                if view.pause_mode == CHECKPOINT:
                    await self.host.restore(sandbox_id)
                else:
                    await self.host.thaw(sandbox_id)
            except (BackendError, OSError) as exc:  # still paused, its images intact
                why = public_reason(exc, f"resuming {sandbox_id}")
                raise SandboxUnavailableError(
                    f"could not resume {sandbox_id}: {why}", details={"sandboxId": sandbox_id}
                ) from exc
            # Its processes run again: that is the state now, whatever happens next.
            resumed = self.resumed(view, reason)
            try:
                # The agent answers on a unix socket, not the network: both at once.
                steps: list[Awaitable[Any]] = [self.live.reconnect(sandbox_id)]
                if view.pause_mode == CHECKPOINT:
                    steps.append(self.host.plug(sandbox_id))
                await asyncio.gather(*steps)
            except (BackendError, OSError, SandlotError) as exc:
                why = public_reason(exc, f"reconnecting to {sandbox_id}")
                raise SandboxUnavailableError(
                    f"{sandbox_id} resumed but could not be reached yet: {why}",
                    details={"sandboxId": sandbox_id},
                ) from exc
            return resumed

    def resumed(self, view: SandboxView, reason: str) -> SandboxView:
        """Record that the paused sandbox `view` runs again (a resume, a rollback of a
        paused one, a pause a crash cut short), with how long it was paused."""
        paused_for = 0
        if view.paused_at is not None:
            paused_for = int((datetime.now(UTC) - view.paused_at).total_seconds() * 1000)
        self.live.last_activity[view.id] = time.monotonic()
        return self.status.set(
            view.id,
            SandboxStatus.RUNNING,
            reason=reason,
            changes={**_NOT_PAUSED, "paused_ms": view.paused_ms + paused_for},
            extra={"pausedDurationMs": paused_for},
        )

    async def ensure_running(self, org_id: str, view: SandboxView) -> None:
        """A call that needs the sandbox running found it paused: resume it, unless the
        server is configured to answer INVALID_STATE instead."""
        if view.status is SandboxStatus.PAUSED and self.auto_resume:
            await self.resume(org_id, view.id, reason="resumed by a request")
            return
        require_running(view.id, view.status)

    async def pause_idle(self, sandbox_ids: list[str]) -> None:
        """Pause the sandboxes supervision found idle, each on its own: one slow to pause
        (an agent that stalls its quiesce, a long checkpoint) holds only itself, never
        the next pass, which waits at most IDLE_PAUSE_WAIT for them."""
        for sandbox_id in sandbox_ids:
            if sandbox_id not in self._idle_pauses:
                self._start_idle_pause(sandbox_id)
        pending = list(self._idle_pauses.values())
        if pending:
            await asyncio.wait(pending, timeout=IDLE_PAUSE_WAIT)

    def pausing(self, sandbox_id: str) -> bool:
        """Whether an idle pause of the sandbox is under way."""
        return sandbox_id in self._idle_pauses

    def _start_idle_pause(self, sandbox_id: str) -> None:
        async def pause() -> None:
            try:
                await self.pause(None, sandbox_id, reason="idle")
            except (InvalidStateError, SandboxNotFoundError):
                pass  # destroyed or changed meanwhile
            except SandlotError as exc:
                log.warning("idle pause of %s failed: %s", sandbox_id, exc.message)

        task = asyncio.get_running_loop().create_task(pause(), name=f"idle pause {sandbox_id}")
        self._idle_pauses[sandbox_id] = task
        task.add_done_callback(lambda _: self._idle_pauses.pop(sandbox_id, None))

    async def close(self) -> None:
        """Let idle pauses under way finish, briefly, then cancel what is left."""
        pending = list(self._idle_pauses.values())
        if pending:
            await asyncio.wait(pending, timeout=IDLE_PAUSE_WAIT)
        for task in pending:
            task.cancel()

    async def set_timeout(self, org_id: str, sandbox_id: str, seconds: int) -> SandboxView:
        """The sandbox's lifetime, counted from now; 0 removes the limit."""
        view = self.records.get(org_id, sandbox_id)
        if view.status in (SandboxStatus.TERMINATED, SandboxStatus.STOPPING):
            require_running(sandbox_id, view.status)
        expires = datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None
        self.records.record(sandbox_id, timeout=seconds or None, expires_at=expires)
        return self.records.get(org_id, sandbox_id)

    # ---- after a restart -----------------------------------------------------------------

    async def settle(self, view: SandboxView, host: RuntimeStatus) -> bool:
        """Finish what a crash interrupted for a running or paused sandbox; False leaves
        it to the ordinary adopt-or-fail rules."""
        sandbox_id = view.id
        needed = recovery(view.status, view.pause_mode, host)
        if needed is Recovery.STAYS_PAUSED:
            log.info("sandbox %s stays paused (%s)", sandbox_id, view.pause_mode)
        elif needed is Recovery.FINISH_RESUME:
            # The network may already have been taken out for the dump.
            await self.host.thaw(sandbox_id)
            await self.host.plug(sandbox_id)
            await self.live.reconnect(sandbox_id, view)
            self.resumed(view, "a pause was interrupted by a restart")
        elif needed is Recovery.BACK_TO_PAUSED:
            self.status.set(
                sandbox_id,
                SandboxStatus.PAUSED,
                reason="a resume was interrupted by a restart",
                changes={"pause_mode": CHECKPOINT, "paused_at": datetime.now(UTC)},
            )
        elif needed is Recovery.THAW:
            await self.host.thaw(sandbox_id)
            return False
        return needed is not Recovery.NONE
