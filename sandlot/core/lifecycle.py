"""Pause and resume, idle pauses, lifetimes, snapshots, rollback and branches.

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
import shutil
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from sandlot.core.events import Event
from sandlot.core.incidents import public_reason
from sandlot.core.models import CreateSandbox, SandboxView
from sandlot.core.patches import Patcher
from sandlot.core.quotas import SnapshotQuota, check_snapshot_quota
from sandlot.core.reconciliation import Recovery, recovery
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError, RuntimeStatus
from sandlot.domain.resources import Resources
from sandlot.domain.states import (
    CHECKPOINT,
    FREEZE,
    SandboxStatus,
    check_transition,
    require_running,
)
from sandlot.errors import (
    InvalidConfigError,
    InvalidStateError,
    SandboxNotFoundError,
    SandboxUnavailableError,
    SandlotError,
    SnapshotNotFoundError,
)
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store import snapshots as snapshot_rows
from sandlot.store.tables import SnapshotRow
from sandlot.templates.store import Template

if TYPE_CHECKING:
    from sandlot.core.service import SandboxService

log = logging.getLogger(__name__)

IDLE_PAUSE_WAIT = 1.0
"""Seconds a supervision pass waits for the idle pauses it started before moving on."""
"""A sandbox using more CPU than this is busy, even with nobody talking to it."""

_NOT_PAUSED: dict[str, Any] = {"pause_mode": None, "paused_at": None}


@dataclass(frozen=True)
class SnapshotView:
    id: str
    sandbox_id: str
    name: str
    description: str | None
    template: str
    resources: Resources
    has_memory: bool
    size_bytes: int
    revision: int
    created_at: datetime
    env: dict[str, str]
    """The sandbox's environment when it was taken; a branch starts with it."""

    @classmethod
    def of(cls, row: SnapshotRow) -> SnapshotView:
        return cls(
            id=row.id,
            sandbox_id=row.sandbox_id,
            name=row.name,
            description=row.description,
            template=row.template,
            resources=Resources(row.vcpus, row.memory_mb, row.disk_mb),
            has_memory=row.has_memory,
            size_bytes=row.size_bytes,
            revision=row.revision,
            created_at=row.created_at,
            env=dict(row.env),
        )


class Lifecycle:
    """The lifecycle half of the service; it works on the service's live sandboxes."""

    def __init__(
        self,
        service: SandboxService,
        snapshots_root: Path,
        *,
        pause_mode: str = "auto",
        auto_resume: bool = True,
        snapshot_quota: SnapshotQuota | None = None,
    ) -> None:
        self.service = service
        self.snapshot_quota = snapshot_quota or SnapshotQuota(100, 100 * 1024)
        self.host = service.host
        self.snapshots_root = snapshots_root
        self.pause_mode = pause_mode
        self.auto_resume = auto_resume
        self.patches = Patcher(self)
        self._idle_pauses: dict[str, asyncio.Task[None]] = {}
        snapshots_root.mkdir(parents=True, exist_ok=True)

    def mode(self, sandbox_id: str) -> str:
        """How the sandbox's pauses are held: checkpoints wherever its backend can."""
        if self.pause_mode == FREEZE or not self.host.capabilities(sandbox_id).checkpoint:
            return FREEZE
        return CHECKPOINT

    # ---- pause and resume ----------------------------------------------------------------

    async def pause(
        self, org_id: str | None, sandbox_id: str, reason: str = "paused"
    ) -> SandboxView:
        svc = self.service
        async with svc.lock(sandbox_id):
            view = svc.get(org_id, sandbox_id)
            if view.status is SandboxStatus.PAUSED:
                return view
            require_running(sandbox_id, view.status)
            mode = self.mode(sandbox_id)
            svc.status.set(
                sandbox_id,
                SandboxStatus.PAUSED,
                reason=reason,
                changes={"pause_mode": mode, "paused_at": datetime.now(UTC)},
                extra={"pauseMode": mode},
            )
            session = await svc.detach(sandbox_id)
            try:
                if mode == CHECKPOINT:
                    if session is not None:
                        await session.quiesce()
                    await self._unplug(sandbox_id)
                    await self.host.checkpoint(sandbox_id)
                else:
                    if session is not None:
                        await session.close()
                    await self.host.freeze(sandbox_id)
            except (BackendError, OSError) as exc:
                if mode == FREEZE:
                    svc.status.set(sandbox_id, SandboxStatus.RUNNING, changes=_NOT_PAUSED)
                    await svc.reconnect(sandbox_id)
                    why = public_reason(exc, f"freezing {sandbox_id}")
                    raise SandboxUnavailableError(f"could not pause {sandbox_id}: {why}") from exc
                why = public_reason(exc, f"checkpointing {sandbox_id}")
                log.warning("checkpoint of %s failed, freezing it instead: %s", sandbox_id, why)
                await self._plug(sandbox_id)
                await self.host.freeze(sandbox_id)
                self._record(
                    sandbox_id,
                    pause_mode=FREEZE,
                    status_reason=f"{reason}; checkpoint failed, frozen in memory: {why}",
                )
            return svc.get(org_id, sandbox_id)

    async def resume(
        self, org_id: str | None, sandbox_id: str, reason: str = "resumed"
    ) -> SandboxView:
        svc = self.service
        async with svc.lock(sandbox_id):
            view = svc.get(org_id, sandbox_id)
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
            resumed = self._resumed(view, reason)
            try:
                # The agent answers on a unix socket, not the network: both at once.
                steps: list[Awaitable[Any]] = [svc.reconnect(sandbox_id)]
                if view.pause_mode == CHECKPOINT:
                    steps.append(self._plug(sandbox_id))
                await asyncio.gather(*steps)
            except (BackendError, OSError, SandlotError) as exc:
                why = public_reason(exc, f"reconnecting to {sandbox_id}")
                raise SandboxUnavailableError(
                    f"{sandbox_id} resumed but could not be reached yet: {why}",
                    details={"sandboxId": sandbox_id},
                ) from exc
            return resumed

    def _resumed(self, view: SandboxView, reason: str) -> SandboxView:
        paused_for = 0
        if view.paused_at is not None:
            paused_for = int((datetime.now(UTC) - view.paused_at).total_seconds() * 1000)
        self.service.last_activity[view.id] = time.monotonic()
        return self.service.status.set(
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
        view = self.service.get(org_id, sandbox_id)
        if view.status in (SandboxStatus.TERMINATED, SandboxStatus.STOPPING):
            require_running(sandbox_id, view.status)
        expires = datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None
        self._record(sandbox_id, timeout=seconds or None, expires_at=expires)
        return self.service.get(org_id, sandbox_id)

    # ---- after a restart -----------------------------------------------------------------

    async def settle(self, view: SandboxView, host: RuntimeStatus) -> bool:
        """Finish what a crash interrupted for a running or paused sandbox; False leaves
        it to the ordinary adopt-or-fail rules."""
        svc = self.service
        sandbox_id = view.id
        needed = recovery(view.status, view.pause_mode, host)
        if needed is Recovery.STAYS_PAUSED:
            log.info("sandbox %s stays paused (%s)", sandbox_id, view.pause_mode)
        elif needed is Recovery.FINISH_RESUME:
            # The network may already have been taken out for the dump.
            await self.host.thaw(sandbox_id)
            await self._plug(sandbox_id)
            await svc.reconnect(sandbox_id, view)
            self._resumed(view, "a pause was interrupted by a restart")
        elif needed is Recovery.BACK_TO_PAUSED:
            svc.status.set(
                sandbox_id,
                SandboxStatus.PAUSED,
                reason="a resume was interrupted by a restart",
                changes={"pause_mode": CHECKPOINT, "paused_at": datetime.now(UTC)},
            )
        elif needed is Recovery.THAW:
            await self.host.thaw(sandbox_id)
            return False
        return needed is not Recovery.NONE

    # ---- snapshots -----------------------------------------------------------------------

    async def snapshot(
        self,
        org_id: str,
        sandbox_id: str,
        name: str | None = None,
        *,
        memory: bool | None = None,
        description: str | None = None,
    ) -> SnapshotView:
        svc = self.service
        caps = self.host.capabilities(sandbox_id)
        if memory and not caps.checkpoint:
            raise InvalidConfigError(
                f"{self.host.backend_of(sandbox_id)} cannot take memory snapshots here: "
                f"{caps.checkpoint_problem}; take a filesystem snapshot with memory=false"
            )
        with_memory = caps.checkpoint if memory is None else memory
        await svc.session(org_id, sandbox_id)  # resumes a paused sandbox
        async with svc.lock(sandbox_id):
            view = svc.get(org_id, sandbox_id)
            require_running(sandbox_id, view.status)
            held = self.list_snapshots(org_id)
            check_snapshot_quota(self.snapshot_quota, len(held), sum(h.size_bytes for h in held))
            snapshot_id = ids.new_snapshot_id()
            self._insert_snapshot(view, snapshot_id, name or snapshot_id, description, with_memory)
            target = self.snapshot_dir(snapshot_id)
            session = await svc.detach(sandbox_id) if with_memory else None
            try:
                if session is not None:
                    await session.quiesce()
                if with_memory:
                    await self._unplug(sandbox_id)
                size = await self.host.snapshot(sandbox_id, target, with_memory)
            except (BackendError, OSError) as exc:
                self._drop_snapshot(snapshot_id)
                why = public_reason(exc, f"snapshotting {sandbox_id}")
                raise SandboxUnavailableError(
                    f"could not snapshot {sandbox_id}: {why}", details={"sandboxId": sandbox_id}
                ) from exc
            finally:
                if with_memory:
                    await self._plug(sandbox_id)
                    await svc.reconnect(sandbox_id)
            with svc.db.session() as s:
                row = s.get(SnapshotRow, snapshot_id)
                assert row is not None
                row.status, row.size_bytes = "ready", size
                snap = SnapshotView.of(row)
        self._publish("snapshot.created", snap, org_id)
        return snap

    def _insert_snapshot(
        self,
        view: SandboxView,
        snapshot_id: str,
        name: str,
        description: str | None,
        memory: bool,
    ) -> None:
        with self.service.db.session() as s:
            sandbox = sandbox_rows.get(s, view.id)
            assert sandbox is not None
            s.add(
                SnapshotRow(
                    id=snapshot_id,
                    org_id=view.org_id,
                    sandbox_id=view.id,
                    name=name,
                    description=description,
                    status="creating",
                    template=sandbox.template,
                    template_digest=sandbox.template_digest,
                    rootfs=sandbox.rootfs,
                    vcpus=sandbox.vcpus,
                    memory_mb=sandbox.memory_mb,
                    disk_mb=sandbox.disk_mb,
                    env=dict(sandbox.env),
                    has_memory=memory,
                    size_bytes=0,
                    revision=1,
                    created_at=datetime.now(UTC),
                )
            )
            try:
                s.flush()
            except IntegrityError:
                raise InvalidConfigError(
                    f"sandbox {view.id} already has a snapshot named {name!r}; pick another "
                    "name or delete that snapshot first",
                    details={"name": name},
                ) from None

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.snapshots_root / snapshot_id

    def list_snapshots(self, org_id: str, sandbox_id: str | None = None) -> list[SnapshotView]:
        if sandbox_id is not None:
            self.service.get(org_id, sandbox_id)
        with self.service.db.session() as s:
            rows = snapshot_rows.of_org(s, org_id, sandbox_id)
            return [SnapshotView.of(r) for r in rows if r.status == "ready"]

    def get_snapshot(self, org_id: str, ref: str, sandbox_id: str | None = None) -> SnapshotView:
        if sandbox_id is not None:
            self.service.get(org_id, sandbox_id)  # another organisation's: SANDBOX_NOT_FOUND
        with self.service.db.session() as s:
            row = snapshot_rows.find(s, org_id, ref, sandbox_id)
            if row is None:
                where = f" of sandbox {sandbox_id}" if sandbox_id else ""
                raise SnapshotNotFoundError(
                    f"no snapshot {ref!r}{where} (or it belongs to another organisation)",
                    details={"snapshot": ref},
                )
            return SnapshotView.of(row)

    def delete_snapshot(self, org_id: str, ref: str, sandbox_id: str | None = None) -> None:
        snap = self.get_snapshot(org_id, ref, sandbox_id)
        self._drop_snapshot(snap.id)
        self._publish("snapshot.deleted", snap, org_id)

    def _drop_snapshot(self, snapshot_id: str) -> None:
        with self.service.db.session() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is not None:
                s.delete(row)
        shutil.rmtree(self.snapshot_dir(snapshot_id), ignore_errors=True)

    def drop_unfinished(self) -> None:
        """Snapshots a crash cut short are incomplete: remove them at start-up."""
        with self.service.db.session() as s:
            unfinished = [r.id for r in snapshot_rows.unfinished(s)]
        for snapshot_id in unfinished:
            log.info("removing snapshot %s, interrupted while being taken", snapshot_id)
            self._drop_snapshot(snapshot_id)

    def _publish(self, kind: str, snap: SnapshotView, org_id: str) -> None:
        data = {"snapshotId": snap.id, "name": snap.name, "hasMemory": snap.has_memory}
        self.service.events.publish(Event(kind, snap.sandbox_id, org_id, data))

    # ---- rollback and branches ---------------------------------------------------------

    async def rollback(self, org_id: str, sandbox_id: str, ref: str) -> SandboxView:
        """Put the sandbox back as it was at one of its snapshots: same id, same address,
        processes too when the snapshot holds them."""
        svc = self.service
        async with svc.lock(sandbox_id):
            view = svc.get(org_id, sandbox_id)
            if view.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED):
                require_running(sandbox_id, view.status)
            snap = self._own_snapshot(org_id, view, ref)
            session = await svc.detach(sandbox_id)
            if session is not None:
                await session.close()
            try:
                await svc.restart_from(view, self.snapshot_dir(snap.id))
            except (BackendError, OSError) as exc:
                why = public_reason(exc, f"rolling {sandbox_id} back to {snap.id}")
                svc.status.set(
                    sandbox_id, SandboxStatus.ERROR, reason=f"rollback failed: {why}", ended=True
                )
                raise SandboxUnavailableError(
                    f"rollback of {sandbox_id} to {snap.name} failed: {why}"
                ) from exc
            if view.status is SandboxStatus.PAUSED:
                self._resumed(view, f"rolled back to {snap.name}")
            data = {"snapshotId": snap.id, "name": snap.name}
            svc.events.publish(Event("rollback", sandbox_id, org_id, data))
            svc.last_activity[sandbox_id] = time.monotonic()
            return svc.get(org_id, sandbox_id)

    def _own_snapshot(self, org_id: str, view: SandboxView, ref: str) -> SnapshotView:
        """One of the sandbox's snapshots, or the one it was branched from."""
        try:
            return self.get_snapshot(org_id, ref, view.id)
        except SnapshotNotFoundError:
            if view.snapshot_id is not None and ref == view.snapshot_id:
                return self.get_snapshot(org_id, ref)
            raise

    async def branch(
        self,
        org_id: str,
        ref: str,
        *,
        sandbox_id: str | None = None,
        metadata: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        timeout: int | None = None,
        idle_timeout: int = 600,
    ) -> SandboxView:
        """A new sandbox started from a snapshot (of `sandbox_id`, by name or id, or any
        of the organisation's by id); the snapshot's sandbox is not touched."""
        snap = (
            self._own_snapshot(org_id, self.service.get(org_id, sandbox_id), ref)
            if sandbox_id is not None
            else self.get_snapshot(org_id, ref)
        )
        request = CreateSandbox(
            template=snap.template,
            resources=snap.resources,
            env={**snap.env, **(env or {})},
            metadata=metadata or {},
            idle_timeout=idle_timeout,
            timeout=timeout,
            snapshot_id=snap.id,
        )
        return await self.service.create(org_id, request)

    def source_of(self, org_id: str, snapshot_id: str) -> tuple[Template, Path]:
        """What a sandbox created from a snapshot starts from: the snapshot's template
        version (kept even if the template was rebuilt since) and its directory."""
        snap_row = self._row(org_id, snapshot_id)
        template = self.service.catalog.stack_of(snap_row)
        if not all(layer.is_dir() for layer in template.layers):
            raise InvalidStateError(
                f"snapshot {snapshot_id} was taken on template {snap_row.template} version "
                f"{snap_row.template_digest}, which has been removed"
            )
        return template, self.snapshot_dir(snapshot_id)

    def _row(self, org_id: str, snapshot_id: str) -> SnapshotRow:
        with self.service.db.session() as s:
            row = snapshot_rows.find(s, org_id, snapshot_id)
            if row is None:
                raise SnapshotNotFoundError(
                    f"no snapshot {snapshot_id!r} (or it belongs to another organisation)",
                    details={"snapshot": snapshot_id},
                )
            s.expunge(row)
            return row

    async def _unplug(self, sandbox_id: str) -> None:
        """CRIU dumps the sandbox's own network namespace but not a veth into the host's:
        the interface goes out for the dump and comes back (`_plug`) afterwards, so a
        memory snapshot resets the sandbox's open connections to the outside."""
        await self.host.unplug(sandbox_id)

    async def _plug(self, sandbox_id: str) -> None:
        await self.host.plug(sandbox_id)

    def _record(self, sandbox_id: str, **changes: Any) -> None:
        """Columns that change without a transition."""
        with self.service.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            if row is not None:
                for column, value in changes.items():
                    setattr(row, column, value)
