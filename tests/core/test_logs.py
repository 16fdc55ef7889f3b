"""Log followers over an agent connection the test feeds by hand: lines become `log`
events of their sandbox in order, the agent's reports of lost lines become a note, the
host's own rate limit cuts a flood to its burst and then its rate and says how much it
dropped (at most once a second), a follower on a new connection waits for the previous
one to publish what it holds (but not for ever), and a dropped connection ends a
follower quietly without leaving it behind.

The agent is the tenant's to replace, so each of these holds whatever it sends; the
line checks themselves are in test_log_lines.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from sandlot.agent.syslog import FACILITIES, SEVERITIES
from sandlot.core import logs as logs_module
from sandlot.core.events import Event, EventBus, EventFilter
from sandlot.core.logs import LINES_BURST, LINES_PER_SECOND, LogFollowers, _Bucket
from sandlot.core.session import SandboxSession
from sandlot.errors import SandboxUnavailableError
from tests.core.support import FakeClock, drain, join

ORG = "org-1"


@dataclass
class Batch:
    lines: list[dict[str, Any]]
    missed: int = 0


@dataclass
class FakeAgent:
    """One agent connection's log stream: batches the test sends, then the connection
    drops (as the real client reports it: SandboxUnavailableError)."""

    _batches: asyncio.Queue[Batch | None] = field(default_factory=asyncio.Queue)

    def send(self, *texts: str, missed: int = 0) -> None:
        lines = [{"line": t, "tag": "app", "severity": "info", "facility": "daemon"} for t in texts]
        self._batches.put_nowait(Batch(lines, missed))

    def send_raw(self, lines: list[Any]) -> None:
        self._batches.put_nowait(Batch(lines))

    def drop(self) -> None:
        self._batches.put_nowait(None)

    async def follow_log(self) -> AsyncIterator[Batch]:
        while (batch := await self._batches.get()) is not None:
            yield batch
        raise SandboxUnavailableError("the agent connection closed")

    @property
    def session(self) -> SandboxSession:
        return cast(SandboxSession, self)


@pytest.fixture
def bus() -> EventBus:
    return EventBus(queue_size=10_000)


def texts(events: list[Event]) -> list[str]:
    return [str(e.data["line"]) for e in events]


async def test_lines_become_log_events_of_their_sandbox_in_order(bus: EventBus) -> None:
    followers = LogFollowers(bus)
    agent = FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, agent.session)
        agent.send("one", "two")
        agent.send("three")
        agent.drop()
        await followers.close()
        got = await drain(sub)
    assert texts(got) == ["one", "two", "three"]
    assert {(e.type, e.sandbox_id, e.org_id) for e in got} == {("log", "sbx-1", ORG)}
    assert {(e.data["tag"], e.data["severity"], e.data["facility"]) for e in got} == {
        ("app", "info", "daemon")
    }
    assert all(e.data["at"] == e.at.isoformat() for e in got)  # the host's time, both ways


async def test_lines_the_agent_lost_are_noted_before_the_lines_that_follow(
    bus: EventBus,
) -> None:
    followers = LogFollowers(bus)
    agent = FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, agent.session)
        agent.send("after the gap", missed=7)
        agent.drop()
        await followers.close()
        note, line = await drain(sub)
    assert note.data["line"] == "7 log lines were lost before they could be delivered"
    assert (note.data["tag"], note.data["severity"], note.data["facility"]) == (
        "sandlot",
        "warning",
        "syslog",
    )
    assert line.data["line"] == "after the gap"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, {"line": "", "tag": "", "severity": "notice", "facility": "user"}),
        ({"line": 42, "tag": None}, {"line": "42", "tag": "None"}),
        ({"severity": "ERR", "facility": "Kern"}, {"severity": "notice", "facility": "user"}),
        ({"severity": ["err"], "facility": 3}, {"severity": "notice", "facility": "user"}),
        *[({"severity": s}, {"severity": s}) for s in SEVERITIES],
        *[({"facility": f}, {"facility": f}) for f in FACILITIES],
    ],
)
async def test_a_lines_fields_are_kept_only_as_the_syslog_names_they_may_be(
    bus: EventBus, raw: dict[str, Any], expected: dict[str, str]
) -> None:
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        LogFollowers(bus)._publish("sbx-1", ORG, raw)
        (event,) = await drain(sub, quiet=0.01)
    assert {k: event.data[k] for k in expected} == expected


async def test_what_is_not_a_line_is_skipped_and_the_rest_kept(bus: EventBus) -> None:
    followers = LogFollowers(bus)
    agent = FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, agent.session)
        agent.send_raw(["text", None, 7, {"line": "kept"}, [1, 2], {"line": "also"}])
        agent.drop()
        await followers.close()
        assert texts(await drain(sub)) == ["kept", "also"]


async def test_a_flood_is_cut_to_the_burst_then_the_rate_and_the_drop_is_reported(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(logs_module, "time", clock)
    followers = LogFollowers(bus)
    agent = FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, agent.session)
        agent.send(*(f"a{i}" for i in range(LINES_BURST + 300)))
        burst = await drain(sub)
        clock.advance(0.5)  # half a second's worth comes back, no report yet
        agent.send(*(f"b{i}" for i in range(LINES_PER_SECOND)))
        half = await drain(sub)
        clock.advance(0.5)
        agent.send("c0", "c1")
        agent.drop()
        await followers.close()
        last = await drain(sub)
    assert texts(burst) == [f"a{i}" for i in range(LINES_BURST)]
    assert texts(half) == [f"b{i}" for i in range(LINES_PER_SECOND // 2)]
    dropped = 300 + LINES_PER_SECOND // 2
    assert texts(last) == [
        "c0",
        "c1",
        f"{dropped} log lines were dropped: more than {LINES_PER_SECOND}/s",
    ]


@pytest.mark.parametrize(
    ("rate", "burst", "idle", "refilled"),
    [
        (100, 50, 0.25, 25),  # a quarter second's worth
        (100, 50, 60.0, 50),  # a long idle refills no more than the burst
        (10, 1, 0.35, 1),  # three and a half tokens' time, but room for one
        (10, 5, 0.05, 0),  # half a token: nothing yet
        (3, 10, 1.0, 3),
    ],
)
def test_the_bucket_gives_its_burst_then_refills_at_its_rate_up_to_the_burst(
    monkeypatch: pytest.MonkeyPatch, rate: float, burst: int, idle: float, refilled: int
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(logs_module, "time", clock)
    bucket = _Bucket(rate, burst)
    assert sum(bucket.take() for _ in range(burst * 3)) == burst  # a fresh bucket: its burst
    clock.advance(idle)
    assert sum(bucket.take() for _ in range(burst * 3)) == refilled


def test_the_bucket_reports_drops_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(logs_module, "time", clock)
    bucket = _Bucket(rate=1, burst=1)
    assert bucket.take() and not bucket.take() and not bucket.take()
    assert bucket.report() == 0  # not a second since it started
    clock.advance(1.0)
    assert bucket.report() == 2
    assert bucket.report() == 0  # reported: the count starts again
    clock.advance(0.0001)
    assert bucket.take()  # the second refilled one token
    assert not bucket.take()
    clock.advance(0.5)
    assert bucket.report() == 0  # dropped one, but within a second of the last report
    clock.advance(0.5)
    assert bucket.report() == 1


async def test_a_new_connections_follower_waits_for_the_previous_to_publish_its_lines(
    bus: EventBus,
) -> None:
    followers = LogFollowers(bus)
    first, second, third = FakeAgent(), FakeAgent(), FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, first.session)
        first.send("1a")
        await asyncio.sleep(0.01)
        followers.follow("sbx-1", ORG, second.session)  # a resume: a new connection
        second.send("2a")
        first.send("1b")  # the old connection still hands over what it held
        await asyncio.sleep(0.01)
        first.drop()
        await asyncio.sleep(0.01)
        followers.follow("sbx-1", ORG, third.session)  # the second is still open
        third.send("3a")
        second.send("2b")
        await asyncio.sleep(0.01)
        second.drop()
        third.drop()
        await followers.close()
        assert texts(await drain(sub)) == ["1a", "1b", "2a", "2b", "3a"]


async def test_a_previous_follower_that_does_not_finish_is_cancelled_after_the_wait(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "HANDOVER_WAIT", 0.05)
    followers = LogFollowers(bus)
    stuck, fresh = FakeAgent(), FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, stuck.session)
        followers.follow("sbx-1", ORG, fresh.session)
        fresh.send("new")
        assert await sub.next(timeout=0.02) is None  # still waiting for the old one
        got = await sub.next(timeout=1)
        stuck.send("too late")  # the old follower is gone: nobody reads this
        fresh.drop()
        await followers.close()
        rest = await drain(sub)
    assert got is not None and got.data["line"] == "new"
    assert rest == []


async def test_followers_of_different_sandboxes_do_not_wait_for_each_other(
    bus: EventBus,
) -> None:
    followers = LogFollowers(bus)
    a, b = FakeAgent(), FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-a", ORG, a.session)
        followers.follow("sbx-b", ORG, b.session)
        b.send("from b")
        got = await sub.next(timeout=0.5)  # far less than a handover wait
        a.drop()
        b.drop()
        await followers.close()
    assert got is not None and (got.sandbox_id, got.data["line"]) == ("sbx-b", "from b")


async def test_a_dropped_connection_ends_its_follower_and_leaves_nothing_behind(
    bus: EventBus,
) -> None:
    followers = LogFollowers(bus)
    agents = [FakeAgent() for _ in range(3)]
    for n, agent in enumerate(agents):
        followers.follow(f"sbx-{n}", ORG, agent.session)
    assert len(followers._tasks) == 3
    for agent in agents:
        agent.drop()
    for _ in range(10):
        await asyncio.sleep(0)
    assert followers._tasks == {}


async def test_close_waits_for_what_was_held_and_cancels_what_hangs(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "HANDOVER_WAIT", 0.05)
    followers = LogFollowers(bus)
    closing, hanging = FakeAgent(), FakeAgent()
    with bus.subscribe(EventFilter(org_id=ORG)) as sub:
        await join(sub)
        followers.follow("sbx-1", ORG, closing.session)
        followers.follow("sbx-2", ORG, hanging.session)
        tasks = list(followers._tasks.values())
        closing.send(*(f"l{i}" for i in range(50)))
        closing.drop()
        await asyncio.wait_for(followers.close(), timeout=2)
        await asyncio.sleep(0)
        got = await drain(sub)
    assert texts(got) == [f"l{i}" for i in range(50)]
    assert all(task.done() for task in tasks)
    assert tasks[1].cancelled()
