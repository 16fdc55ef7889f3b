"""The event bus's byte budgets against a real SQLite store, without a server: each
sandbox and each organisation keeps its newest events within its budget, trimmed back
to nine tenths, and an owner's total is summed from the store after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.core.events import TRIM_TO, Event, EventBudget, EventBus
from sandlot.store import events as event_rows
from sandlot.store.database import Database, migrate

LINE = "x" * 1000


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    migrate(database.engine)
    return database


def publish(bus: EventBus, org: str, sandbox: str | None, n: int) -> None:
    for i in range(n):
        bus.publish(Event("log", sandbox, org, {"line": LINE, "n": i}))
    bus.flush()


def stored(db: Database, org: str, sandbox: str | None = None) -> int:
    with db.session() as s:
        return event_rows.stored_bytes(s, org, sandbox)


def numbers(db: Database, org: str, sandbox: str) -> list[int]:
    with db.session() as s:
        return [int(r.data["n"]) for r in event_rows.after(s, org, 0, sandbox_id=sandbox)]


def test_a_sandbox_keeps_its_newest_events_within_its_budget(db: Database) -> None:
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=50_000, org_bytes=10_000_000))
    publish(bus, "org", "sbx-a", 120)  # ~123 KB
    assert TRIM_TO * 50_000 * 0.95 < stored(db, "org", "sbx-a") <= 50_000
    kept = numbers(db, "org", "sbx-a")
    assert kept == list(range(kept[0], 120)) and kept[0] > 0  # the oldest went first
    assert bus.trimmed > 0


def test_an_organisation_is_trimmed_across_its_sandboxes_and_no_other(db: Database) -> None:
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=1_000_000, org_bytes=60_000))
    publish(bus, "quiet", "sbx-q", 20)
    before = stored(db, "quiet")
    for sandbox in ("sbx-1", "sbx-2", "sbx-3"):
        publish(bus, "loud", sandbox, 30)
    assert stored(db, "loud") <= 60_000
    assert numbers(db, "loud", "sbx-1") == []  # the oldest sandbox's events went first
    assert numbers(db, "loud", "sbx-3") == list(range(30))
    assert stored(db, "quiet") == before


def test_a_new_bus_sums_what_the_store_already_holds(db: Database) -> None:
    budget = EventBudget(sandbox_bytes=50_000, org_bytes=10_000_000)
    publish(EventBus(db, budget=budget), "org", "sbx-a", 40)  # ~41 KB: within
    assert numbers(db, "org", "sbx-a")[0] == 0
    publish(EventBus(db, budget=budget), "org", "sbx-a", 20)  # a restart, then ~20 KB more
    assert stored(db, "org", "sbx-a") <= 50_000
    assert numbers(db, "org", "sbx-a")[0] > 0
