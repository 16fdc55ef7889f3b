"""SandboxService: every sandbox operation, in the order that keeps store and host consistent.

Each transition is written to the store before it is acted on, so a crash at any point
leaves a row that reconciliation can finish: a `creating` or `stopping` row whose
sandbox is gone is settled on the next start, never left half-way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandlot.agent.protocol import EntryInfo, ProcessInfo
from sandlot.core.admission import Admission
from sandlot.core.builds import TemplateBuilds
from sandlot.core.capacity import Capacity
from sandlot.core.catalog import Catalog
from sandlot.core.denied_names import DeniedNames
from sandlot.core.events import Event, EventBus
from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.keyed_locks import KeyedLocks
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.logs import LogFollowers
from sandlot.core.metrics import MetricsSampler, Sampled
from sandlot.core.models import (
    CommandOutcome,
    CreateSandbox,
    SandboxPage,
    SandboxView,
    StartProcess,
)
from sandlot.core.pool import (
    WarmPool,
    template_spec,
    with_agent,
)
from sandlot.core.previews import Auth, Exposure, Previews
from sandlot.core.quotas import Quota, SnapshotQuota
from sandlot.core.reconciliation import Action, leftovers, outcome
from sandlot.core.session import AttachmentLike, ExecResultLike, SandboxSession
from sandlot.core.supervision import Watched, decide
from sandlot.core.transitions import StatusWriter
from sandlot.core.usage import UsageRecord, usage_in_window
from sandlot.domain import ids
from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.domain.states import SandboxStatus, require_running
from sandlot.errors import (
    CommandTimeoutError,
    InvalidConfigError,
    SandboxNotFoundError,
    SandboxUnavailableError,
    SandlotError,
)
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.templates.store import Template, TemplateStore

log = logging.getLogger(__name__)

DEFAULT_SHELL = ["/bin/bash", "-l"]
FIRST_ATTACH_GRACE = 5.0
READY_TIMEOUT = 60.0
"""How long create waits for a template's READY check (less than the SDK's request timeout,
so the caller gets the error, not a hang-up)."""
READY_INTERVAL = 0.2
"""Seconds a new process's output waits for its first attachment before it runs free
into the scrollback ring: a client that starts and then attaches loses nothing."""


@dataclass(frozen=True)
class Live:
    """A running sandbox's owner, environment and agent connection."""

    org_id: str
    env: dict[str, str]
    session: SandboxSession
    user: str | None = None
    """Who commands run as when the caller does not say: the template's USER."""


class SandboxService:
    def __init__(
        self,
        *,
        db: Database,
        templates: TemplateStore,
        events: EventBus,
        capacity: Capacity,
        host: Host,
        pool: WarmPool | None = None,
        exec_timeout: float = 60.0,
        exec_output_limit: int = 64 * 1024 * 1024,
        sampler: MetricsSampler | None = None,
        default_quota: Quota | None = None,
        snapshots_root: Path | None = None,
        pause_mode: str = "auto",
        auto_resume: bool = True,
        snapshot_quota: SnapshotQuota | None = None,
        previews: Previews | None = None,
    ) -> None:
        self.db = db
        self.status = StatusWriter(db, events)
        self.catalog = Catalog(db, templates, host.uid_offset)
        self.previews = previews
        self._denied_until: dict[str, DeniedNames] = {}
        """Per sandbox, the names a `network.denied` event went out for, and until when."""
        host.on_denied = self._network_denied
        self.templates = templates
        self.events = events
        self.logs = LogFollowers(events)
        self.host = host
        self._exec_timeout = exec_timeout
        self._exec_output_limit = exec_output_limit
        self.sampler = sampler or MetricsSampler(host, events)
        self.admission = Admission(db, capacity, default_quota or Quota(100, 64, 64 * 1024))
        self.pool = pool
        self._live: dict[str, Live] = {}  # what the hot path needs, without the store
        self._locks = KeyedLocks()
        self.last_activity: dict[str, float] = {}
        self.holds: collections.Counter[str] = collections.Counter()
        self.builds = TemplateBuilds(self)
        self.lifecycle = Lifecycle(
            self,
            snapshots_root or Path(tempfile.gettempdir()) / "sandlot-snapshots",
            pause_mode=pause_mode,
            auto_resume=auto_resume,
            snapshot_quota=snapshot_quota,
        )

    # ---- lifecycle -------------------------------------------------------------------

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
            template, snapshot = self.lifecycle.source_of(org_id, request.snapshot_id)
        elif disk_from is not None and from_template is not None:
            template, snapshot = from_template, disk_from
        else:
            template = from_template or self.catalog.visible(org_id, request.template)
            # The pool holds sandboxes of the default backend only.
            if (
                self.pool is not None
                and from_template is None
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
                spec = template_spec(template, sandbox_id, request.resources, cpus)
                spec = dataclasses.replace(spec, runtime=request.runtime)
                session = await self.host.start(spec, request.network, snapshot=snapshot)
            self._record_address(sandbox_id)
        except BaseException as exc:
            await self._destroy_on_host(sandbox_id)
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
        self._live[sandbox_id] = Live(org_id, request.env, session, template.user or None)
        self.logs.follow(sandbox_id, org_id, session)
        self.last_activity[sandbox_id] = time.monotonic()
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
            await self._forget(sandbox_id)
            await self._destroy_on_host(sandbox_id)
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
        async with self.lock(sandbox_id):
            view = self.get(org_id, sandbox_id)
            if view.status is SandboxStatus.TERMINATED:
                return view
            if view.status is not SandboxStatus.STOPPING:  # else: a destroy that failed before
                self.status.set(sandbox_id, SandboxStatus.STOPPING)
            await self._forget(sandbox_id)
            await self._destroy_on_host(sandbox_id)
            return self.status.set(sandbox_id, SandboxStatus.TERMINATED, reason=reason, ended=True)

    def get(self, org_id: str | None, sandbox_id: str) -> SandboxView:
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id, org_id)
            if row is None:
                raise SandboxNotFoundError(
                    f"sandbox {sandbox_id} does not exist (or belongs to another organisation)",
                    details={"sandboxId": sandbox_id},
                )
            return SandboxView.of(row)

    def list_sandboxes(
        self,
        org_id: str,
        *,
        status: SandboxStatus | None = None,
        metadata: dict[str, str] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> SandboxPage:
        with self.db.session() as s:
            rows, total = sandbox_rows.page(
                s,
                org_id,
                status=status.value if status else None,
                metadata=metadata or {},
                limit=limit,
                offset=offset,
            )
            return SandboxPage([SandboxView.of(r) for r in rows], total, limit, offset)

    # ---- work inside a sandbox ---------------------------------------------------------

    async def session(self, org_id: str, sandbox_id: str) -> SandboxSession:
        """The live agent connection of a running sandbox of `org_id`; counts as activity."""
        return (await self._live_sandbox(org_id, sandbox_id)).session

    async def _live_sandbox(self, org_id: str, sandbox_id: str) -> Live:
        live = self._live.get(sandbox_id)
        if live is None or live.session.closed or live.org_id != org_id:
            view = self.get(org_id, sandbox_id)
            await self.lifecycle.ensure_running(org_id, view)
            live = self._live.get(sandbox_id)
            if live is None or live.session.closed:
                live = await self._reconnect(view)
        self.last_activity[sandbox_id] = time.monotonic()
        return live

    async def run_command(
        self,
        org_id: str,
        sandbox_id: str,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        user: str | None = None,
    ) -> CommandOutcome:
        live = await self._live_sandbox(org_id, sandbox_id)
        oom_before = self.host.oom_kills(sandbox_id)
        result = await live.session.exec(
            command,
            cwd=cwd,
            env={**live.env, **(env or {})},
            timeout=timeout or self._exec_timeout,
            max_output=self._exec_output_limit,
            user=user or live.user,
        )
        self.record_completion(org_id, sandbox_id, command, result)
        if result.timed_out:
            raise CommandTimeoutError(
                f"command did not finish within {timeout or self._exec_timeout} s and was killed",
                details={
                    "stdout": result.stdout.decode(errors="replace"),
                    "stderr": result.stderr.decode(errors="replace"),
                },
            )
        oom_killed = result.signal == "SIGKILL" and self.host.oom_kills(sandbox_id) > oom_before
        return CommandOutcome(
            stdout=result.stdout,
            stderr=result.stderr,
            exit_code=result.exit_code,
            signal=result.signal,
            duration_ms=result.duration_ms,
            oom_killed=oom_killed,
            truncated=result.truncated,
        )

    async def read_file(self, org_id: str, sandbox_id: str, path: str) -> AsyncIterator[bytes]:
        """Chunks of a file; a missing file raises here, before any byte is promised."""
        session = await self.session(org_id, sandbox_id)
        chunks = session.read_file(path)
        first = await anext(chunks, b"")

        async def stream() -> AsyncIterator[bytes]:
            yield first
            async for chunk in chunks:
                yield chunk

        return stream()

    async def write_file(
        self,
        org_id: str,
        sandbox_id: str,
        path: str,
        chunks: AsyncIterable[bytes],
        mode: int | None = None,
    ) -> EntryInfo:
        session = await self.session(org_id, sandbox_id)
        entry = await session.write_file(path, chunks, mode=mode)
        self.events.publish(
            Event(
                "file.created", sandbox_id, org_id, {"path": entry["path"], "size": entry["size"]}
            )
        )
        return entry

    # ---- metrics and usage -------------------------------------------------------------

    def sample_metrics(self) -> None:
        with self.db.session() as s:
            running = [
                Sampled(r.id, r.org_id, r.vcpus)
                for r in sandbox_rows.live(s)
                if r.status == SandboxStatus.RUNNING.value
            ]
        self.sampler.sample(running)

    def metrics(self, org_id: str, sandbox_id: str) -> dict[str, Any]:
        """The latest sampled figures (sampling now if none are there yet)."""
        view = self.get(org_id, sandbox_id)
        require_running(sandbox_id, view.status)
        latest = self.sampler.latest.get(sandbox_id)
        if latest is None:
            self.sampler.sample([Sampled(sandbox_id, org_id, view.resources.vcpus)], complete=False)
            latest = self.sampler.latest[sandbox_id]
        return latest

    def count_by_status(self) -> dict[str, int]:
        with self.db.session() as s:
            return sandbox_rows.count_by_status(s)

    def usage_report(self, org_id: str, start: datetime, end: datetime) -> list[UsageRecord]:
        with self.db.session() as s:
            rows = sandbox_rows.overlapping(s, org_id, start, end)
            spans = [(r.id, r.vcpus, r.memory_mb, r.started_at, r.ended_at) for r in rows]
        return usage_in_window(spans, start, end)

    # ---- background processes and terminals ------------------------------------------

    async def start_process(
        self, org_id: str, sandbox_id: str, request: StartProcess
    ) -> ProcessInfo:
        """Start a process the sandbox's agent owns; it outlives the caller's connection."""
        live = await self._live_sandbox(org_id, sandbox_id)
        command = request.command
        if command is None:
            if request.pty is None:
                raise InvalidConfigError("command is required unless a pty is asked for")
            command = DEFAULT_SHELL
        return await live.session.start_process(
            command,
            cwd=request.cwd,
            env={**live.env, **request.env},
            timeout=request.timeout,
            pty=request.pty,
            max_run_after_disconnect=request.max_run_after_disconnect,
            scrollback=request.scrollback_bytes,
            hold_until_attach=FIRST_ATTACH_GRACE,
            user=request.user or live.user,
        )

    async def attach(self, org_id: str, sandbox_id: str, process_id: str) -> AttachmentLike:
        return await (await self.session(org_id, sandbox_id)).attach(process_id)

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
        """Record activity that bypasses the service (stdin and output of an attachment)."""
        if sandbox_id in self._live:
            self.last_activity[sandbox_id] = time.monotonic()

    def record_completion(
        self, org_id: str, sandbox_id: str, command: object, result: ExecResultLike
    ) -> None:
        self.events.publish(
            Event(
                "exec.completed",
                sandbox_id,
                org_id,
                {
                    "command": command,
                    "exitCode": result.exit_code,
                    "signal": result.signal,
                    "durationMs": result.duration_ms,
                    "timedOut": result.timed_out,
                },
            )
        )

    def usage(self, org_id: str, sandbox_id: str) -> dict[str, int]:
        view = self.get(org_id, sandbox_id)
        if view.status is not SandboxStatus.PAUSED:  # a paused one reads what it holds
            require_running(sandbox_id, view.status)
        u = self.host.usage(sandbox_id)
        return {
            "cpuNs": u.cpu_ns,
            "memoryBytes": u.memory_bytes,
            "memoryLimitBytes": u.memory_limit_bytes,
            "pids": u.pids,
            "oomKills": u.oom_kills,
            "diskBytes": u.disk_bytes,
            "diskLimitBytes": u.disk_limit_bytes,
        }

    # ---- start-up, supervision, shut-down ----------------------------------------------

    async def start(self) -> None:
        """Settle what a previous run left, then begin warming sandboxes."""
        await self.host.start_up()
        self.lifecycle.drop_unfinished()
        await self.reconcile()
        await self.builds.settle()
        if self.pool is not None:
            self.pool.refill()

    async def reconcile(self) -> None:
        """Make the store and the host agree after a restart or crash.

        Running sandboxes are adopted (their agent reconnected); rows whose sandbox
        vanished become `error`; host leftovers with no live row are removed.
        """
        # Networks first: settling an interrupted pause gives the sandbox its interface
        # back, which needs its address and rules known again.
        await self._reconcile_networks()
        on_host = {r.sandbox_id: r.status for r in await self.host.list()}
        with self.db.session() as s:
            live = [SandboxView.of(r) for r in sandbox_rows.live(s)]
        for view in live:
            sandbox_id = view.id
            host_status = on_host.get(sandbox_id, RuntimeStatus.MISSING)
            try:
                if await self.lifecycle.settle(view, host_status):
                    continue
            except Exception:  # one sandbox must not keep the server from starting
                log.exception("sandbox %s could not be settled", sandbox_id)
            decided = outcome(view.status, host_status)
            reason = decided.reason
            if decided.action is Action.ADOPT:
                try:
                    await self._reconnect(view)
                    self.last_activity[sandbox_id] = time.monotonic()
                    log.info("adopted running sandbox %s", sandbox_id)
                    continue
                except SandlotError as exc:
                    reason = f"agent unreachable after restart: {exc.message}"
            elif decided.action is Action.FINISH_DESTROY:
                await self._destroy_on_host(sandbox_id)
                self.status.set(
                    sandbox_id, SandboxStatus.TERMINATED, reason="destroyed", ended=True
                )
                continue
            await self._destroy_on_host(sandbox_id)
            self.status.set(sandbox_id, SandboxStatus.ERROR, reason=reason, ended=True)
            log.warning("sandbox %s: %s", sandbox_id, reason)
        for leftover in sorted(leftovers({view.id for view in live}, set(on_host))):
            log.info("removing leftover sandbox %s", leftover)
            await self.host.destroy(leftover)

    async def _reconcile_networks(self) -> None:
        """Re-apply the rules of every sandbox still live (the resolver may listen on
        another port now) and remove the networks of any other."""
        if not self.host.networked:
            return
        with self.db.session() as s:
            kept = [(r.id, r.address, r.network) for r in sandbox_rows.live(s)]
        for sandbox_id, address, policy in kept:
            if address is not None:
                await self.host.adopt_network(sandbox_id, address, NetworkPolicy.parse(policy))
        await self.host.remove_network_leftovers({sandbox_id for sandbox_id, _, _ in kept})

    async def supervise_once(self) -> None:
        """One tick: end expired sandboxes, notice ones that died on their own, pause
        idle ones (what to do to each is decided in `supervision.py`)."""
        tick = decide(self._watched(), datetime.now(UTC))
        for sandbox in tick.expire:
            await self.destroy(sandbox.org_id, sandbox.id, reason="timeout")
        for sandbox in tick.check_alive:
            if await self.host.status(sandbox.id) is not RuntimeStatus.RUNNING:
                await self._forget(sandbox.id)
                await self._destroy_on_host(sandbox.id)
                self.status.set(
                    sandbox.id,
                    SandboxStatus.ERROR,
                    reason="sandbox stopped unexpectedly",
                    ended=True,
                )
        for sandbox in tick.active:
            self.touch(sandbox.id)
        await self.lifecycle.pause_idle([sandbox.id for sandbox in tick.pause])

    def _watched(self) -> list[Watched]:
        """Every live sandbox as supervision sees it, from the store and this server."""
        now = time.monotonic()
        with self.db.session() as s:
            rows = [
                (r.id, r.org_id, SandboxStatus(r.status), r.expires_at, r.idle_timeout)
                for r in sandbox_rows.live(s)
            ]
        watched = []
        for sandbox_id, org_id, status, expires_at, idle_timeout in rows:
            live = self._live.get(sandbox_id)
            connected = live is not None and not live.session.closed
            # Only a connected sandbox gets an activity record: one listed here may be
            # gone (or mid-transition) by now, and must not get one back.
            idle_for = now - self.last_activity.setdefault(sandbox_id, now) if connected else 0
            watched.append(
                Watched(
                    sandbox_id,
                    org_id,
                    status,
                    expires_at=expires_at,
                    idle_timeout=idle_timeout,
                    idle_for=idle_for,
                    cpu_percent=self.sampler.latest.get(sandbox_id, {}).get("cpuPercent", 0.0),
                    busy=self._locks.busy(sandbox_id),
                    connected=connected,
                    held=bool(self.holds[sandbox_id]),
                    pausing=self.lifecycle.pausing(sandbox_id),
                )
            )
        return watched

    async def close(self) -> None:
        """Drop agent connections; sandboxes keep running and are adopted on next start."""
        await self.lifecycle.close()
        await self.builds.close()
        if self.pool is not None:
            await self.pool.close()
        for live in self._live.values():
            await live.session.close()
        self._live.clear()
        await self.logs.close()
        await self.host.close()

    # ---- network and preview ports -----------------------------------------------------

    async def update_network(
        self, org_id: str, sandbox_id: str, changes: dict[str, Any]
    ) -> SandboxView:
        """Merge `changes` (the API's camelCase form) into the sandbox's policy and apply
        it at once, without a restart. Under the sandbox's lock, so two concurrent
        changes both count."""
        self._require_network()
        async with self.lock(sandbox_id):
            require_running(sandbox_id, self.get(org_id, sandbox_id).status)
            with self.db.session() as s:
                row = sandbox_rows.get(s, sandbox_id)
                assert row is not None
                policy = NetworkPolicy.parse(row.network).merged(changes)
                row.network = policy.to_dict()
                view = SandboxView.of(row)
            await self.host.apply_policy(sandbox_id, policy)
        return view

    def ports(self, org_id: str, sandbox_id: str) -> list[Exposure]:
        self.get(org_id, sandbox_id)
        self._require_network()
        return self._previews().list(sandbox_id, self.host.policy_of(sandbox_id))

    def expose_port(
        self, org_id: str, sandbox_id: str, port: int, auth: Auth
    ) -> tuple[Exposure, str | None]:
        require_running(sandbox_id, self.get(org_id, sandbox_id).status)
        return self._previews().expose(org_id, sandbox_id, port, auth)

    def close_port(self, org_id: str, sandbox_id: str, port: int) -> None:
        self.get(org_id, sandbox_id)
        self._previews().close(org_id, sandbox_id, port)

    async def preview_target(self, sandbox_id: str, port: int, token: str | None) -> str:
        """The address a preview request for `port` goes to, once `token` is checked;
        wakes a paused sandbox and counts as activity."""
        address = self.preview_address(sandbox_id, port, token)
        if address is None:
            await self.session(self.get(None, sandbox_id).org_id, sandbox_id)
            address = self._preview_reached(sandbox_id)
        return address

    def preview_address(self, sandbox_id: str, port: int, token: str | None) -> str | None:
        """`preview_target` without waking, for the proxy's per-request check: None when
        the sandbox has to be woken first."""
        self._require_network()
        self._previews().admit(sandbox_id, port, token, self.host.policy_of(sandbox_id))
        live = self._live.get(sandbox_id)
        if live is None or live.session.closed:
            return None
        return self._preview_reached(sandbox_id)

    def _preview_reached(self, sandbox_id: str) -> str:
        address = self.host.address_of(sandbox_id)
        if address is None:
            raise SandboxNotFoundError(f"sandbox {sandbox_id} has no network")
        self.touch(sandbox_id)
        return address

    def _network_denied(self, sandbox_id: str, name: str) -> None:
        live = self._live.get(sandbox_id)
        if live is None:
            return  # a warm sandbox nobody owns yet, or one on its way out
        now = time.monotonic()
        denied = self._denied_until.setdefault(sandbox_id, DeniedNames())
        data = denied.report(name, now)
        if data is not None:
            self.events.publish(Event("network.denied", sandbox_id, live.org_id, data))

    def _require_network(self) -> None:
        if not self.host.networked:
            raise InvalidConfigError("networking is turned off on this server (network_enabled)")

    def _previews(self) -> Previews:
        if self.previews is None:
            raise InvalidConfigError("preview URLs are turned off on this server")
        return self.previews

    def _record_address(self, sandbox_id: str) -> None:
        if not self.host.networked:
            return
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            if row is not None:
                row.address = self.host.address_of(sandbox_id)

    async def _destroy_on_host(self, sandbox_id: str) -> None:
        """Everything the sandbox has on the host, its address lease included."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            address = row.address if row is not None else None
        await self.host.destroy(sandbox_id, address)
        if self.previews is not None:
            self.previews.forget(sandbox_id)

    # ---- helpers -----------------------------------------------------------------------

    async def detach(self, sandbox_id: str) -> SandboxSession | None:
        """Take the sandbox's agent connection out of service (before it is paused or
        replaced); the caller closes or quiesces it."""
        live = self._live.pop(sandbox_id, None)
        self.last_activity.pop(sandbox_id, None)
        return live.session if live is not None else None

    async def reconnect(self, sandbox_id: str, view: SandboxView | None = None) -> Live:
        return await self._reconnect(view or self.get(None, sandbox_id))

    async def restart_from(self, view: SandboxView, snapshot: Path) -> None:
        """Replace the sandbox's disk and processes with a snapshot's, keeping its id,
        resources and network."""
        with self.db.session() as s:
            row = sandbox_rows.get(s, view.id)
            assert row is not None
            template = self.catalog.stack_of(row)
            cpus = row.cpus
        await self.host.restart(template_spec(template, view.id, view.resources, cpus), snapshot)
        await self._reconnect(view)

    async def _reconnect(self, view: SandboxView) -> Live:
        session = await self.host.connect(view.id)
        with self.db.session() as s:
            row = sandbox_rows.get(s, view.id)
            assert row is not None
            template = self.catalog.stack_of(row)
        live = self._live[view.id] = Live(view.org_id, view.env, session, template.user or None)
        self.logs.follow(view.id, view.org_id, session)
        return live

    async def _forget(self, sandbox_id: str) -> None:
        live = self._live.pop(sandbox_id, None)
        self.last_activity.pop(sandbox_id, None)
        self._denied_until.pop(sandbox_id, None)
        if live is not None:
            await live.session.close()

    def lock(self, sandbox_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialises transitions of one sandbox (pause, snapshot, destroy, ...)."""
        return self._locks.hold(sandbox_id)
