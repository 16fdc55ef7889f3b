"""Taking snapshots of a sandbox, putting it back to one (rollback) and starting new
sandboxes from one (branch). A memory snapshot quiesces the agent and takes the
sandbox's interface out for the dump, as a checkpointing pause does; a filesystem one
copies the disk's changes while the sandbox runs on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from sandlot.core.events import Event
from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.live import LiveSandboxes
from sandlot.core.models import CreateSandbox, SandboxView
from sandlot.core.pool import template_spec
from sandlot.core.quotas import SnapshotQuota, check_snapshot_quota
from sandlot.core.records import Records
from sandlot.core.sandboxes import Sandboxes
from sandlot.core.snapshot_store import SnapshotStore, SnapshotView
from sandlot.core.transitions import StatusWriter
from sandlot.core.volumes import Volumes
from sandlot.core.work import Work
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError
from sandlot.domain.states import SandboxStatus, require_running
from sandlot.errors import InvalidConfigError, SandboxUnavailableError
from sandlot.store.tables import SnapshotRow


@dataclass(eq=False, kw_only=True)
class Snapshots:
    store: SnapshotStore
    records: Records
    status: StatusWriter
    host: Host
    live: LiveSandboxes
    lifecycle: Lifecycle
    work: Work
    sandboxes: Sandboxes
    volumes: Volumes
    quota: SnapshotQuota

    async def snapshot(
        self,
        org_id: str,
        sandbox_id: str,
        name: str | None = None,
        *,
        memory: bool | None = None,
        description: str | None = None,
    ) -> SnapshotView:
        caps = self.host.capabilities(sandbox_id)
        if memory and not caps.checkpoint:
            raise InvalidConfigError(
                f"{self.host.backend_of(sandbox_id)} cannot take memory snapshots here: "
                f"{caps.checkpoint_problem}; take a filesystem snapshot with memory=false"
            )
        with_memory = caps.checkpoint if memory is None else memory
        await self.work.session(org_id, sandbox_id)  # resumes a paused sandbox
        async with self.live.lock(sandbox_id):
            view = self.records.get(org_id, sandbox_id)
            require_running(sandbox_id, view.status)
            held = self.store.list_snapshots(org_id)
            check_snapshot_quota(self.quota, len(held), sum(h.size_bytes for h in held))
            snapshot_id = ids.new_snapshot_id()
            self.store.insert(view, snapshot_id, name or snapshot_id, description, with_memory)
            target = self.store.snapshot_dir(snapshot_id)
            session = await self.live.detach(sandbox_id) if with_memory else None
            try:
                if session is not None:
                    await session.quiesce()
                if with_memory:
                    await self.host.unplug(sandbox_id)
                size = await self.host.snapshot(sandbox_id, target, with_memory)
            except (BackendError, OSError) as exc:
                self.store.drop(snapshot_id)
                why = public_reason(exc, f"snapshotting {sandbox_id}")
                raise SandboxUnavailableError(
                    f"could not snapshot {sandbox_id}: {why}", details={"sandboxId": sandbox_id}
                ) from exc
            finally:
                if with_memory:
                    await self.host.plug(sandbox_id)
                    await self.live.reconnect(sandbox_id)
            with self.records.db.session() as s:
                row = s.get(SnapshotRow, snapshot_id)
                assert row is not None
                row.status, row.size_bytes = "ready", size
                snap = SnapshotView.of(row)
        self.store.publish("snapshot.created", snap, org_id)
        return snap

    async def rollback(self, org_id: str, sandbox_id: str, ref: str) -> SandboxView:
        """Put the sandbox back as it was at one of its snapshots: same id, same address,
        processes too when the snapshot holds them."""
        async with self.live.lock(sandbox_id):
            view = self.records.get(org_id, sandbox_id)
            if view.status not in (SandboxStatus.RUNNING, SandboxStatus.PAUSED):
                require_running(sandbox_id, view.status)
            snap = self.store.own(org_id, view, ref)
            session = await self.live.detach(sandbox_id)
            if session is not None:
                await session.close()
            try:
                await self._restart_from(view, self.store.snapshot_dir(snap.id))
            except (BackendError, OSError) as exc:
                why = public_reason(exc, f"rolling {sandbox_id} back to {snap.id}")
                self.status.set(
                    sandbox_id, SandboxStatus.ERROR, reason=f"rollback failed: {why}", ended=True
                )
                raise SandboxUnavailableError(
                    f"rollback of {sandbox_id} to {snap.name} failed: {why}"
                ) from exc
            if view.status is SandboxStatus.PAUSED:
                self.lifecycle.resumed(view, f"rolled back to {snap.name}")
            data = {"snapshotId": snap.id, "name": snap.name}
            self.store.events.publish(Event("rollback", sandbox_id, org_id, data))
            self.live.last_activity[sandbox_id] = time.monotonic()
            return self.records.get(org_id, sandbox_id)

    async def _restart_from(self, view: SandboxView, snapshot: Path) -> None:
        """Replace the sandbox's disk and processes with a snapshot's, keeping its id,
        resources and network."""
        template, cpus = self.records.stack(view.id)
        spec = template_spec(template, view.id, view.resources, cpus)
        mounts = self.volumes.mounts_of(view.id)
        await self.host.restart(dataclasses.replace(spec, mounts=mounts), snapshot)
        await self.live.connect(view)

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
            self.store.own(org_id, self.records.get(org_id, sandbox_id), ref)
            if sandbox_id is not None
            else self.store.get_snapshot(org_id, ref)
        )
        request = CreateSandbox(
            template=snap.template,
            resources=snap.resources,
            env={**snap.env, **(env or {})},
            metadata=metadata or {},
            idle_timeout=idle_timeout,
            timeout=timeout,
            snapshot_id=snap.id,
            # The same volumes as the sandbox it was taken of: their contents are the
            # volumes' own, now, not part of the snapshot.
            mounts=tuple(self.volumes.named_mounts(snap.sandbox_id)),
        )
        return await self.sandboxes.create(org_id, request)
