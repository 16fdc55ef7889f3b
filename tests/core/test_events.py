"""The event bus end to end against a real SQLite store: which events a filter lets
through, that stored events get increasing ids and reach subscribers only once stored
while metrics skip the store, that a replay from a cursor is read page by page in order
and scoped by its filter, that a subscriber falling behind goes back to the store and
misses no stored event, that the pending queue and the owners' totals are bounded, that
closing (even from a cancelled reader) takes a subscriber out, and that pruning and the
byte budgets keep the store bounded without losing count of what it holds.

These are the promises the event stream API and its clients rely on: no gaps and no
repeats across a resume, and a store that cannot be grown without bound by one sandbox.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from sandlot.core import events as events_module
from sandlot.core.events import (
    REPLAY_PAGE,
    RETENTION,
    TRIM_TO,
    Event,
    EventBudget,
    EventBus,
    EventFilter,
    _size_of,
    _Totals,
)
from sandlot.store import events as event_rows
from sandlot.store.database import Database
from tests.core.support import drain, join

ORG = "org-1"


def log_event(n: int, sandbox: str | None = "sbx-1", org: str = ORG, pad: int = 0) -> Event:
    return Event("log", sandbox, org, {"n": n, "line": "x" * pad})


def stored_numbers(db: Database, org: str = ORG, sandbox: str | None = None) -> list[int]:
    with db.session() as s:
        return [int(r.data["n"]) for r in event_rows.after(s, org, 0, sandbox_id=sandbox)]


def stored_bytes(db: Database, org: str = ORG, sandbox: str | None = None) -> int:
    with db.session() as s:
        return event_rows.stored_bytes(s, org, sandbox)


def numbers(events: list[Event]) -> list[int]:
    return [int(e.data["n"]) for e in events]


@pytest.mark.parametrize(
    ("wanted", "event", "matches"),
    [
        (EventFilter(), Event("log", "sbx-1", ORG), True),
        (EventFilter(org_id=ORG), Event("log", "sbx-1", ORG), True),
        (EventFilter(org_id="org-2"), Event("log", "sbx-1", ORG), False),
        (EventFilter(sandbox_id="sbx-1"), Event("log", "sbx-1", ORG), True),
        (EventFilter(sandbox_id="sbx-2"), Event("log", "sbx-1", ORG), False),
        (EventFilter(sandbox_id="sbx-1"), Event("log", None, ORG), False),
        (EventFilter(types=frozenset({"status", "log"})), Event("log", "sbx-1", ORG), True),
        (EventFilter(types=frozenset({"status"})), Event("log", "sbx-1", ORG), False),
        (EventFilter(types=frozenset()), Event("log", "sbx-1", ORG), True),  # empty: all
        (EventFilter(ORG, "sbx-1", frozenset({"log"})), Event("log", "sbx-1", "org-2"), False),
    ],
)
def test_a_filter_lets_through_what_each_of_its_fields_allows(
    wanted: EventFilter, event: Event, matches: bool
) -> None:
    assert wanted.matches(event) is matches


async def test_without_a_store_events_go_out_at_once_in_order_and_without_ids() -> None:
    bus = EventBus()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        for n in range(5):
            bus.publish(log_event(n))
        bus.publish(log_event(99, org="org-2"))  # another organisation's: not this stream
        got = await drain(sub)
    assert numbers(got) == [0, 1, 2, 3, 4]
    assert all(e.id is None for e in got)
    assert bus.published == 6


async def test_stored_events_reach_subscribers_once_stored_with_increasing_ids(
    db: Database,
) -> None:
    bus = EventBus(db)
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        for n in range(3):
            bus.publish(log_event(n))
        assert await sub.next(timeout=0.02) is None  # queued, not yet stored
        bus.flush()
        got = await drain(sub)
    assert numbers(got) == [0, 1, 2]
    ids = [e.id for e in got]
    assert all(i is not None for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert stored_numbers(db) == [0, 1, 2]


async def test_metrics_go_out_at_once_and_are_never_stored(db: Database) -> None:
    bus = EventBus(db)
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        bus.publish(Event("metrics", "sbx-1", ORG, {"cpuPercent": 1.0}))
        first = await sub.next(timeout=0.5)
        bus.publish(log_event(0))
        bus.flush()
        second = await sub.next(timeout=0.5)
    assert first is not None and first.type == "metrics" and first.id is None
    assert second is not None and second.type == "log" and second.id is not None
    with db.session() as s:
        assert [r.type for r in event_rows.after(s, ORG, 0)] == ["log"]


async def test_a_live_subscription_holds_nothing_until_read_and_starts_from_then(
    db: Database,
) -> None:
    bus = EventBus(db)
    bus.publish(log_event(0))
    bus.flush()
    sub = bus.subscribe(EventFilter(org_id=ORG))
    bus.publish(log_event(1))  # before its first read: it is not on the bus yet
    bus.flush()
    assert bus.subscriber_count == 0
    await join(sub)
    assert bus.subscriber_count == 1
    bus.publish(log_event(2))
    bus.flush()
    assert numbers(await drain(sub)) == [2]
    sub.close()
    assert bus.subscriber_count == 0


@pytest.mark.parametrize("cursor_at", [None, 0, 3, 7])
async def test_a_replay_resumes_after_its_cursor_then_carries_on_live(
    db: Database, cursor_at: int | None
) -> None:
    """`since` is the id of the last event a client saw; None: only what comes next.
    `cursor_at` picks which stored event's id is the cursor (0: since=0, everything)."""
    bus = EventBus(db)
    for n in range(8):
        bus.publish(log_event(n))
    bus.flush()
    with db.session() as s:
        ids = [r.id for r in event_rows.after(s, ORG, 0)]
    since = None if cursor_at is None else (0 if cursor_at == 0 else ids[cursor_at - 1])
    with bus.subscribe(EventFilter(org_id=ORG), since=since) as sub:
        replayed = await drain(sub)
        bus.publish(log_event(100))
        bus.flush()
        live = await drain(sub)
    expected = [] if cursor_at is None else list(range(cursor_at, 8))
    assert numbers(replayed) == expected
    assert numbers(live) == [100]


async def test_a_replay_longer_than_a_page_is_read_a_page_at_a_time_in_order(
    db: Database,
) -> None:
    total = 2 * REPLAY_PAGE + 17
    bus = EventBus(db)
    for n in range(total):
        bus.publish(log_event(n))
    bus.flush()
    got: list[Event] = []
    held: list[int] = []
    with bus.subscribe(EventFilter(org_id=ORG), since=0) as sub:
        while (event := await sub.next(timeout=0.05)) is not None:
            got.append(event)
            held.append(len(sub._page))
    assert numbers(got) == list(range(total))
    assert max(held) < REPLAY_PAGE  # what a stream holds does not grow with the backlog


async def test_a_replay_is_scoped_by_its_filter(db: Database) -> None:
    bus = EventBus(db)
    bus.publish(log_event(0, sandbox="sbx-1"))
    bus.publish(Event("status", "sbx-1", ORG, {"n": 1}))
    bus.publish(log_event(2, sandbox="sbx-2"))
    bus.publish(log_event(3, sandbox="sbx-1", org="org-2"))
    bus.publish(log_event(4, sandbox="sbx-1"))
    bus.flush()
    wanted = EventFilter(org_id=ORG, sandbox_id="sbx-1", types=frozenset({"log"}))
    with bus.subscribe(wanted, since=0) as sub:
        assert numbers(await drain(sub)) == [0, 4]


async def test_a_replay_without_an_organisation_has_nothing_stored_to_read(
    db: Database,
) -> None:
    bus = EventBus(db)
    bus.publish(log_event(0))
    bus.flush()
    with bus.subscribe(EventFilter(sandbox_id="sbx-1"), since=0) as sub:
        assert await drain(sub) == []  # the store is only read within an organisation
        bus.publish(log_event(1))
        bus.flush()
        assert numbers(await drain(sub)) == [1]


@pytest.mark.parametrize("queue_size", [1, 3, 16])
async def test_a_subscriber_that_falls_behind_misses_no_stored_event(
    db: Database, queue_size: int
) -> None:
    bus = EventBus(db, queue_size=queue_size)
    roomy = bus.subscribe(EventFilter(org_id=ORG))
    with bus.subscribe(EventFilter(org_id=ORG)) as slow, roomy:
        roomy._queue = asyncio.Queue()  # one that never falls behind, for comparison
        await join(slow)
        await join(roomy)
        for n in range(60):
            bus.publish(log_event(n))
            bus.publish(Event("metrics", "sbx-1", ORG, {"n": -1}))
        bus.flush()
        slow_got = await drain(slow)
        roomy_got = await drain(roomy)
    stored = [e for e in slow_got if e.type == "log"]
    assert numbers(stored) == list(range(60))  # every stored one, once, in order
    assert len([e for e in slow_got if e.type == "metrics"]) <= queue_size  # metrics: lost
    assert numbers([e for e in roomy_got if e.type == "log"]) == list(range(60))
    assert len(roomy_got) == 120


@pytest.mark.parametrize("queue_size", [1, 3, 8])
async def test_without_a_store_a_subscriber_behind_keeps_only_the_newest(
    queue_size: int,
) -> None:
    bus = EventBus(queue_size=queue_size)
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        for n in range(25):
            bus.publish(log_event(n))
        got = numbers(await drain(sub))
        bus.publish(log_event(25))  # and it carries on live afterwards
        after = numbers(await drain(sub))
    assert got and len(got) <= queue_size
    assert got == list(range(25 - len(got), 25))  # the newest, in order, no repeats
    assert after == [25]


async def test_a_closed_subscription_returns_nothing_and_leaves_the_bus() -> None:
    bus = EventBus()
    sub = bus.subscribe(EventFilter(org_id=ORG))
    await join(sub)
    bus.publish(log_event(0))
    sub.close()
    assert bus.subscriber_count == 0
    assert await sub.next(timeout=1) is None  # at once, though an event was queued
    bus.publish(log_event(1))  # publishing to nobody is fine
    sub.close()  # closing twice too
    assert bus.subscriber_count == 0


async def test_async_iteration_ends_when_the_subscription_is_closed() -> None:
    bus = EventBus()
    sub = bus.subscribe(EventFilter(org_id=ORG))
    await join(sub)
    for n in range(5):
        bus.publish(log_event(n))
    got: list[int] = []
    async for event in sub:
        got.append(int(event.data["n"]))
        if len(got) == 3:
            sub.close()
    assert got == [0, 1, 2]


async def test_a_cancelled_reader_closes_its_subscription_in_its_finally() -> None:
    bus = EventBus()
    joined = asyncio.Event()

    async def reader() -> None:
        sub = bus.subscribe(EventFilter(org_id=ORG))
        try:
            await join(sub)
            joined.set()
            await sub.next()  # waits forever: its client hangs up
        finally:
            sub.close()

    task = asyncio.create_task(reader())
    await joined.wait()
    assert bus.subscriber_count == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bus.subscriber_count == 0


async def test_the_writer_stores_and_delivers_then_flushes_what_is_left_when_cancelled(
    db: Database,
) -> None:
    bus = EventBus(db)
    writer = asyncio.create_task(bus.run())
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        bus.publish(log_event(0))
        delivered = await sub.next(timeout=2)
    assert delivered is not None and delivered.id is not None
    for n in range(1, 4):
        bus.publish(log_event(n))
    writer.cancel()  # before it had a turn: the rest is stored on the way out
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert stored_numbers(db) == [0, 1, 2, 3]


async def test_the_unsaved_queue_is_bounded_and_drops_its_oldest(
    db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events_module, "MAX_PENDING", 5)
    bus = EventBus(db)
    with caplog.at_level(logging.WARNING, logger="sandlot.core.events"):
        for n in range(8):
            bus.publish(log_event(n))
    assert len(bus._pending) == 5
    assert sum("event queue full" in r.getMessage() for r in caplog.records) == 3
    bus.flush()
    assert stored_numbers(db) == [3, 4, 5, 6, 7]
    assert bus.published == 8


async def test_flushing_nothing_or_without_a_store_does_nothing(db: Database) -> None:
    EventBus(db).flush()
    assert stored_numbers(db) == []
    bus = EventBus()
    bus.publish(log_event(0))
    bus.flush()
    assert bus.prune() == 0


def test_pruning_removes_events_past_retention_and_recounts_what_is_left(
    db: Database,
) -> None:
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=12_000, org_bytes=10**9))
    old = datetime.now(UTC) - RETENTION - timedelta(hours=1)
    for n in range(10):
        bus.publish(Event("log", "sbx-1", ORG, {"n": n, "line": "x" * 1000}, at=old))
    bus.flush()
    assert bus.trimmed == 0 and len(stored_numbers(db)) == 10
    assert bus.prune() == 10
    for n in range(10, 20):
        bus.publish(log_event(n, pad=1000))
    bus.flush()
    # Had the pruned bytes still counted, these ten would have pushed it over its budget.
    assert bus.trimmed == 0
    assert stored_numbers(db) == list(range(10, 20))


def test_pruning_keeps_what_is_within_retention(db: Database) -> None:
    bus = EventBus(db)
    now = datetime.now(UTC)
    for n, age in enumerate([RETENTION + timedelta(minutes=5), RETENTION / 2, timedelta(0)]):
        bus.publish(Event("log", "sbx-1", ORG, {"n": n}, at=now - age))
    bus.flush()
    assert bus.prune() == 1
    assert stored_numbers(db) == [1, 2]


@pytest.mark.parametrize(
    ("event", "json_text"),
    [
        (Event("log", "s", ORG, {}), "{}"),
        (Event("status", "s", ORG, {"status": "running"}), '{"status": "running"}'),
        (Event("x", "s", ORG, {"n": [1, 2]}), '{"n": [1, 2]}'),
    ],
)
def test_an_event_costs_its_data_as_json_and_its_type(
    db: Database, event: Event, json_text: str
) -> None:
    assert _size_of(event) == len(json_text) + len(event.type)
    bus = EventBus(db)
    bus.publish(event)
    bus.flush()
    assert stored_bytes(db) == _size_of(event)  # what the budgets count is what is stored


@pytest.mark.parametrize("per_flush", [1, 7, 100])
def test_a_sandbox_over_its_budget_keeps_its_newest_and_counts_what_went(
    db: Database, per_flush: int
) -> None:
    budget = 20_000
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=budget, org_bytes=10**9))
    published = 0
    for start in range(0, 100, per_flush):
        for n in range(start, min(start + per_flush, 100)):
            event = log_event(n, pad=500)
            published += _size_of(event)
            bus.publish(event)
        bus.flush()
        assert stored_bytes(db, ORG, "sbx-1") <= budget  # after every flush, not just the end
    kept = stored_numbers(db, ORG, "sbx-1")
    assert kept == list(range(kept[0], 100))
    assert stored_bytes(db) + bus.trimmed == published


def test_trimming_one_sandbox_leaves_its_siblings_alone(db: Database) -> None:
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=10_000, org_bytes=10**9))
    for n in range(5):
        bus.publish(log_event(n, sandbox="quiet", pad=500))
    for n in range(50):
        bus.publish(log_event(n, sandbox="loud", pad=500))
    bus.flush()
    assert stored_numbers(db, ORG, "quiet") == [0, 1, 2, 3, 4]
    assert stored_bytes(db, ORG, "loud") <= 10_000


def test_an_organisations_own_events_count_against_its_budget_only(db: Database) -> None:
    budget = 10_000
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=budget // 2, org_bytes=budget))
    for n in range(40):
        bus.publish(log_event(n, sandbox=None, pad=500))  # e.g. an org-wide notice
    bus.flush()
    assert TRIM_TO * budget * 0.9 < stored_bytes(db) <= TRIM_TO * budget
    kept = stored_numbers(db)
    assert kept == list(range(kept[0], 40))
    for n in range(40, 45):
        bus.publish(log_event(n, sandbox="sbx-1", pad=100))
    bus.flush()
    assert stored_numbers(db, ORG, "sbx-1") == [40, 41, 42, 43, 44]


async def test_an_event_bigger_than_the_budget_is_delivered_but_not_kept(
    db: Database,
) -> None:
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=1_000, org_bytes=10**9))
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        bus.publish(log_event(0, pad=5_000))
        bus.flush()
        got = await drain(sub)
    assert numbers(got) == [0] and got[0].id is not None
    assert stored_numbers(db) == []
    assert bus.trimmed == _size_of(log_event(0, pad=5_000))


def test_the_totals_remember_a_bounded_number_of_owners_least_recent_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events_module, "TOTALS_KEPT", 3)
    totals = _Totals()
    for key in ("a", "b", "c"):
        totals.set(key, 10)
    assert totals.known("a")  # used: now the most recent
    totals.set("d", 10)
    assert not totals.known("b")  # the least recently used went
    assert all(totals.known(key) for key in ("a", "c", "d"))
    assert totals.add("a", 5) == 15 and totals.add("a", -15) == 0
    assert totals.add("new", 7) == 7  # an owner never loaded starts from nothing
    totals.clear()
    assert not any(totals.known(key) for key in ("a", "c", "d", "new"))


def test_a_forgotten_owners_total_is_summed_from_the_store_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "TOTALS_KEPT", 1)
    bus = EventBus(db, budget=EventBudget(sandbox_bytes=10_000, org_bytes=10**9))
    for n in range(8):
        bus.publish(log_event(n, sandbox="sbx-a", pad=1000))
    bus.flush()
    bus.publish(log_event(0, sandbox="sbx-b"))  # pushes sbx-a out of the totals
    bus.flush()
    for n in range(8, 12):
        bus.publish(log_event(n, sandbox="sbx-a", pad=1000))
    bus.flush()
    assert bus.trimmed > 0
    assert stored_bytes(db, ORG, "sbx-a") <= 10_000
