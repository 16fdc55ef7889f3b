"""A service wired over the in-memory host and a real SQLite store, for core's tests of
what its operations record and ask of the host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sandlot.core.capacity import Capacity
from sandlot.core.events import EventBus
from sandlot.core.host import Host
from sandlot.core.models import CreateSandbox, SandboxView
from sandlot.core.service import SandboxService
from sandlot.domain.resources import Resources
from sandlot.store import keys
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database, migrate
from tests.core.fake_host import FakeHost, template_store

REQUEST = CreateSandbox("base", Resources(1, 512, 1024), timeout=60)


@dataclass
class World:
    service: SandboxService
    host: FakeHost
    db: Database
    org: str

    async def create(self) -> SandboxView:
        return await self.service.sandboxes.create(self.org, REQUEST)

    def row_status(self, sandbox_id: str) -> tuple[str, str | None]:
        with self.db.session() as s:
            row = sandbox_rows.get(s, sandbox_id)
            assert row is not None
            return row.status, row.status_reason

    def calls_on(self, sandbox_id: str) -> list[str]:
        return [op for op, target in self.host.calls if target == sandbox_id]


def build(tmp_path: Path, host: FakeHost, db: Database | None = None) -> World:
    if db is None:
        db = Database(f"sqlite:///{tmp_path / 'store.db'}")
        migrate(db.engine)
    with db.session() as s:
        org = keys.create_org(s, f"acme-{len(host.calls)}").id
    service = SandboxService(
        db=db,
        templates=template_store(tmp_path / "templates"),
        events=EventBus(db),
        capacity=Capacity(tmp_path, memory_overcommit=1.0),
        host=cast(Host, host),  # its sessions serve what the lifecycle asks, no more
        snapshots_root=tmp_path / "snapshots",
    )
    return World(service, host, db, org)
