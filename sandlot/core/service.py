"""Core wired bottom-up: each part is handed the parts below it and nothing more, so no
part reaches the whole. The API, the SSH gateway and the preview proxy use the parts
by name (`core.sandboxes.create`, `core.work.run_command`, ...); this holds them, and
starts and stops them in order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sandlot.core.admission import Admission
from sandlot.core.build_steps import BuildSteps
from sandlot.core.builds import TemplateBuilds
from sandlot.core.capacity import Capacity
from sandlot.core.catalog import Catalog
from sandlot.core.events import EventBus
from sandlot.core.host import Host
from sandlot.core.lifecycle import Lifecycle
from sandlot.core.live import LiveSandboxes
from sandlot.core.logs import LogFollowers
from sandlot.core.metrics import MetricsSampler
from sandlot.core.patches import Patcher
from sandlot.core.pool import WarmPool
from sandlot.core.preview_routes import PreviewRoutes
from sandlot.core.previews import Previews
from sandlot.core.quotas import Quota, SnapshotQuota
from sandlot.core.readings import Readings
from sandlot.core.reconciler import Reconciler
from sandlot.core.records import Records
from sandlot.core.sandbox_network import SandboxNetwork
from sandlot.core.sandboxes import Sandboxes
from sandlot.core.snapshot_store import SnapshotStore
from sandlot.core.snapshots import Snapshots
from sandlot.core.supervision_pass import SupervisionPass
from sandlot.core.transitions import StatusWriter
from sandlot.core.volumes import Volumes
from sandlot.core.work import Work
from sandlot.store.database import Database
from sandlot.templates.layers import LayerStore
from sandlot.templates.store import TemplateStore


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
        volume_quota_mb: int = 200 * 1024,
    ) -> None:
        self.db = db
        self.events = events
        self.host = host
        self.templates = templates
        self.pool = pool
        self.status = StatusWriter(db, events)
        self.catalog = Catalog(db, templates, host.uid_offset)
        self.records = Records(db, self.catalog)
        self.sampler = sampler or MetricsSampler(host, events)
        self.live = LiveSandboxes(self.records, host, LogFollowers(events))
        self.network = SandboxNetwork(self.records, host, events, self.live, previews)
        self.snapshot_store = SnapshotStore(
            self.records,
            self.catalog,
            events,
            snapshots_root or Path(tempfile.gettempdir()) / "sandlot-snapshots",
        )
        self.volumes = Volumes(db, host, events, volume_quota_mb)
        self.sandboxes = Sandboxes(
            records=self.records,
            status=self.status,
            catalog=self.catalog,
            admission=Admission(db, capacity, default_quota or Quota(100, 64, 64 * 1024)),
            host=host,
            live=self.live,
            network=self.network,
            snapshots=self.snapshot_store,
            volumes=self.volumes,
            pool=pool,
        )
        self.lifecycle = Lifecycle(
            records=self.records,
            status=self.status,
            host=host,
            live=self.live,
            pause_mode=pause_mode,
            auto_resume=auto_resume,
        )
        self.work = Work(
            records=self.records,
            live=self.live,
            lifecycle=self.lifecycle,
            host=host,
            events=events,
            exec_timeout=exec_timeout,
            exec_output_limit=exec_output_limit,
        )
        self.previews = PreviewRoutes(self.records, self.network, self.work)
        self.snapshots = Snapshots(
            store=self.snapshot_store,
            records=self.records,
            status=self.status,
            host=host,
            live=self.live,
            lifecycle=self.lifecycle,
            work=self.work,
            sandboxes=self.sandboxes,
            volumes=self.volumes,
            quota=snapshot_quota or SnapshotQuota(100, 100 * 1024),
        )
        self.patches = Patcher(self.snapshot_store, host, self.sandboxes, self.work)
        steps = BuildSteps(
            catalog=self.catalog,
            templates=templates,
            layers=LayerStore(templates.layers_root),
            host=host,
            sandboxes=self.sandboxes,
            work=self.work,
        )
        self.builds = TemplateBuilds(
            db=db, catalog=self.catalog, templates=templates, host=host, steps=steps
        )
        self.readings = Readings(self.records, host, self.sampler)
        self.supervision = SupervisionPass(
            records=self.records,
            host=host,
            live=self.live,
            sandboxes=self.sandboxes,
            lifecycle=self.lifecycle,
            sampler=self.sampler,
        )
        self._reconciler = Reconciler(
            records=self.records,
            status=self.status,
            host=host,
            live=self.live,
            network=self.network,
            lifecycle=self.lifecycle,
        )

    async def start(self) -> None:
        """Settle what a previous run left, then begin warming sandboxes."""
        await self.host.start_up()
        self.snapshot_store.drop_unfinished()
        await self.volumes.settle()
        await self._reconciler.run()
        await self.builds.settle()
        if self.pool is not None:
            self.pool.refill()

    async def close(self) -> None:
        """Drop agent connections; sandboxes keep running and are adopted on next start."""
        await self.lifecycle.close()
        await self.builds.close()
        if self.pool is not None:
            await self.pool.close()
        await self.live.close()
        await self.host.close()
