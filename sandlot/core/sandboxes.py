"""Creating and destroying sandboxes, in the order that keeps store and host consistent.

Each transition is written to the store before it is acted on, so a crash at any point
leaves a row that reconciliation can finish: a `creating` or `stopping` row whose
sandbox is gone is settled on the next start, never left half-way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from sandlot.core.admission import Admission
from sandlot.core.catalog import Catalog
from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.live import Live, LiveSandboxes
from sandlot.core.models import CreateSandbox, SandboxView
from sandlot.core.pool import WarmPool, template_spec, with_agent
from sandlot.core.records import Records
from sandlot.core.sandbox_network import SandboxNetwork
from sandlot.core.session import SandboxSession
from sandlot.core.snapshot_store import SnapshotStore
from sandlot.core.transitions import StatusWriter
from sandlot.core.volumes import Volumes
from sandlot.domain import ids
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.states import SandboxStatus
from sandlot.errors import (
    CommandTimeoutError,
    InvalidConfigError,
    SandboxUnavailableError,
    SandlotError,
)
from sandlot.templates.store import Template

READY_TIMEOUT = 60.0
"""How long create waits for a template's READY check (less than the SDK's request timeout,
so the caller gets the error, not a hang-up)."""
READY_INTERVAL = 0.2


@dataclass(eq=False, kw_only=True)
class Sandboxes:
    records: Records
    status: StatusWriter
    catalog: Catalog
    admission: Admission
    host: Host
    live: LiveSandboxes
    network: SandboxNetwork
    snapshots: SnapshotStore
    volumes: Volumes
    pool: WarmPool | None = None

    async def create(
        self,
        org_id: str,
        request: CreateSandbox,
        *,
        from_template: Template | None = None,
        disk_from: Path | None = None,
    ) -> SandboxView:
        """`from_template` starts from layers that are not (yet) a named template: a
        build's step. With `disk_from` too, the sandbox starts from that directory's disk
        image and no processes, on `from_template`'s stack as it is (a snapshot patch).
        Either way it passes admission and the organisation's quota like any other."""
        self._check_runtime(request.runtime)
        snapshot: Path | None = None
        warm = None
        if request.snapshot_id is not None:
            template, snapshot = self.snapshots.source_of(org_id, request.snapshot_id)
        elif disk_from is not None and from_template is not None:
            template, snapshot = from_template, disk_from
        else:
            template = from_template or self.catalog.visible(org_id, request.template)
            # The pool holds sandboxes of the default backend only.
            if (
                self.pool is not None
                and from_template is None
                and not request.mounts  # a running sandbox cannot be given mounts
                and request.runtime in (None, self.host.name)
            ):
                warm = self.pool.take(template, request.resources)
        if snapshot is None:  # a snapshot's stack already has the agent it was taken with
            template = with_agent(template, self.catalog.agent_layer())
        if template.ports:  # a template's EXPOSEd ports are previewed like the defaults
            ports = tuple(sorted({*request.network.preview_ports, *template.ports}))
            request = dataclasses.replace(
                request, network=dataclasses.replace(request.network, preview_ports=ports)
            )
        sandbox_id = warm.sandbox_id if warm is not None else ids.new_sandbox_id()
        mounts = await self.volumes.bind(org_id, list(request.mounts))
        try:
            cpus = await self.admission.admit(org_id, sandbox_id, template, request)
        except BaseException:
            if warm is not None and self.pool is not None:
                self.pool.put_back(template, warm)
            raise
        self.status.publish(org_id, sandbox_id, SandboxStatus.CREATING)
        try:
            if warm is not None:
                await self.host.update(sandbox_id, request.resources, cpus)
                if self.host.networked and request.network != NetworkPolicy():
                    await self.host.apply_policy(sandbox_id, request.network)
                session = warm.session
            else:
                self.volumes.record(sandbox_id, mounts)
                spec = template_spec(template, sandbox_id, request.resources, cpus)
                spec = dataclasses.replace(spec, runtime=request.runtime, mounts=mounts)
                session = await self.host.start(spec, request.network, snapshot=snapshot)
            self.network.record_address(sandbox_id)
        except BaseException as exc:
            await self.network.release(sandbox_id)
            why = (
                "cancelled"
                if isinstance(exc, asyncio.CancelledError)
                else public_reason(exc, f"starting {sandbox_id}")
            )
            self.status.set(sandbox_id, SandboxStatus.ERROR, reason=f"failed to start: {why}")
            if isinstance(exc, (SandlotError, asyncio.CancelledError)):
                raise
            raise SandboxUnavailableError(
                f"sandbox {sandbox_id} failed to start: {why}", details={"sandboxId": sandbox_id}
            ) from exc
        self.live.add(sandbox_id, Live(org_id, request.env, session, template.user or None))
        if snapshot is None:  # a snapshot's processes were started long ago
            await self._start_template(org_id, sandbox_id, template, session, request.env)
        return self.status.set(
            sandbox_id,
            SandboxStatus.RUNNING,
            started=True,
            changes={
                "snapshot_id": request.snapshot_id,
                "runtime": self.host.backend_of(sandbox_id),
            },
        )

    async def _start_template(
        self,
        org_id: str,
        sandbox_id: str,
        template: Template,
        session: SandboxSession,
        env: dict[str, str],
    ) -> None:
        """Start the template's start command, then wait for its ready check; a sandbox
        that never becomes ready is destroyed and the create fails."""
        if not template.start_command and template.ready_command is None:
            return
        try:
            if template.start_command:
                await session.start_process(
                    list(template.start_command),
                    env={**template.env, **env},
                    user=template.user or None,
                    max_run_after_disconnect=None,
                )
            if template.ready_command is not None:
                await self._wait_ready(session, template, env)
        except BaseException:
            await self.live.forget(sandbox_id)
            await self.network.release(sandbox_id)
            self.status.set(sandbox_id, SandboxStatus.ERROR, reason="its template never got ready")
            raise

    async def _wait_ready(
        self, session: SandboxSession, template: Template, env: dict[str, str]
    ) -> None:
        assert template.ready_command is not None
        deadline = time.monotonic() + READY_TIMEOUT
        last = b""
        while time.monotonic() < deadline:
            result = await session.exec(
                ["/bin/sh", "-c", template.ready_command],
                env={**template.env, **env},
                timeout=max(1.0, deadline - time.monotonic()),
                user=template.user or None,
            )
            if result.exit_code == 0:
                return
            last = result.stderr or result.stdout
            await asyncio.sleep(READY_INTERVAL)
        raise CommandTimeoutError(
            f"template {template.name}'s ready check {template.ready_command!r} did not "
            f"succeed within {READY_TIMEOUT:.0f} s: {last[-500:].decode(errors='replace')}"
        )

    def _check_runtime(self, name: str | None) -> None:
        offered = self.host.backends
        if name is not None and name not in offered:
            raise InvalidConfigError(
                f"runtime {name!r} is not offered by this server; available: "
                f"{', '.join(offered)} (the operator lists more in the `runtimes` setting)",
                details={"runtime": name, "available": list(offered)},
            )

    async def destroy(
        self, org_id: str | None, sandbox_id: str, reason: str = "destroyed"
    ) -> SandboxView:
        async with self.live.lock(sandbox_id):
            view = self.records.get(org_id, sandbox_id)
            if view.status is SandboxStatus.TERMINATED:
                return view
            if view.status is not SandboxStatus.STOPPING:  # else: a destroy that failed before
                self.status.set(sandbox_id, SandboxStatus.STOPPING)
            await self.live.forget(sandbox_id)
            await self.network.release(sandbox_id)
            return self.status.set(sandbox_id, SandboxStatus.TERMINATED, reason=reason, ended=True)

    async def end(self, sandbox_id: str, status: SandboxStatus, reason: str) -> None:
        """Out of service, off the host, and recorded as ended in `status` (one that
        died, expired or vanished while the server was down)."""
        await self.live.forget(sandbox_id)
        await self.network.release(sandbox_id)
        self.status.set(sandbox_id, status, reason=reason, ended=True)
