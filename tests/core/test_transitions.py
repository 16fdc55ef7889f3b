"""The status writer against a real SQLite store: every transition of the table is
allowed or refused as it says, an allowed one is persisted and published, a refused one
changes nothing, and an ending publishes what the sandbox cost."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandlot.core.events import EventBus, EventFilter
from sandlot.core.transitions import StatusWriter
from sandlot.domain.states import TRANSITIONS, SandboxStatus
from sandlot.errors import InvalidStateError, SandboxNotFoundError
from sandlot.store import keys
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database, migrate
from sandlot.store.tables import SandboxRow


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(database.engine)
    return database


def add_sandbox(db: Database, status: SandboxStatus, sandbox_id: str) -> str:
    with db.session() as s:
        org = keys.get_org_by_name(s, "t") or keys.create_org(s, "t")
        s.add(
            SandboxRow(
                id=sandbox_id, org_id=org.id, template="base", template_digest="d", rootfs="/",
                status=status.value, vcpus=2, memory_mb=512, disk_mb=1024, env={}, meta={},
                idle_timeout=600, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        return org.id


def status_of(db: Database, sandbox_id: str) -> str:
    with db.session() as s:
        row = sandbox_rows.get(s, sandbox_id)
        assert row is not None
        return row.status


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(SandboxStatus, SandboxStatus))
)
def test_each_transition_is_allowed_or_refused_as_the_table_says(
    db: Database, current: SandboxStatus, target: SandboxStatus
) -> None:
    add_sandbox(db, current, "sbx-t")
    writer = StatusWriter(db, EventBus())
    if target in TRANSITIONS[current]:
        view = writer.set("sbx-t", target, reason="why")
        assert view.status is target and status_of(db, "sbx-t") == target.value
    else:
        with pytest.raises(InvalidStateError):
            writer.set("sbx-t", target)
        assert status_of(db, "sbx-t") == current.value


def test_a_transition_is_published_and_an_ending_reports_its_cost(db: Database) -> None:
    async def run() -> list[tuple[str, dict[str, object]]]:
        events = EventBus()
        org = add_sandbox(db, SandboxStatus.RUNNING, "sbx-c")
        with events.subscribe(EventFilter(org_id=org)) as sub:
            assert await sub.next(timeout=0.01) is None  # joins the bus on its first read
            writer = StatusWriter(db, events)
            began = datetime.now(UTC) - timedelta(seconds=10)
            writer.set("sbx-c", SandboxStatus.STOPPING, changes={"started_at": began})
            writer.set("sbx-c", SandboxStatus.TERMINATED, reason="done", ended=True)
            seen = []
            while (event := await sub.next(timeout=0.2)) is not None:
                seen.append((event.type, event.data))
            return seen

    seen = asyncio.run(run())
    assert [kind for kind, _ in seen] == ["status", "cost.runtime", "status"]
    cost = seen[1][1]
    assert 9.5 < float(str(cost["runtimeSeconds"])) < 15
    assert cost["vcpuSeconds"] == pytest.approx(2 * float(str(cost["runtimeSeconds"])), abs=0.01)
    assert seen[2][1]["status"] == "terminated" and seen[2][1]["reason"] == "done"


def test_a_sandbox_that_is_not_there_is_not_found(db: Database) -> None:
    with pytest.raises(SandboxNotFoundError):
        StatusWriter(db, EventBus()).set("sbx-none", SandboxStatus.RUNNING)
