"""The system-log lines an agent sends, as the host stores them: the agent is the
tenant's to replace, so each line is cut to the agent's own limits, stamped with the
host's time, named only with syslog's names, and rate-limited on the host."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from sandlot.agent.syslog import MAX_LINE
from sandlot.core.events import EventBus, EventFilter
from sandlot.core.logs import MAX_TAG, LogFollowers, _Bucket


def test_a_hostile_line_is_stored_as_the_hosts_checked_copy() -> None:
    async def run() -> dict[str, object]:
        bus = EventBus()
        with bus.subscribe(EventFilter(org_id="org")) as sub:
            assert await sub.next(timeout=0.01) is None  # joined
            followers = LogFollowers(bus)
            followers._publish(
                "sbx-1",
                "org",
                {
                    "line": "x" * (MAX_LINE * 100),
                    "tag": "t" * 1000,
                    "severity": "apocalypse",
                    "facility": "mars",
                    "at": "9999-12-31T23:59:59Z",
                },
            )
            followers._publish("sbx-1", "org", ["not", "a", "line"])  # dropped
            event = await sub.next(timeout=1)
            assert await sub.next(timeout=0.05) is None
        assert event is not None
        return event.data

    data = asyncio.run(run())
    assert len(str(data["line"])) == MAX_LINE and len(str(data["tag"])) == MAX_TAG
    assert (data["severity"], data["facility"]) == ("notice", "user")
    stamped = datetime.fromisoformat(str(data["at"]))
    assert abs(stamped - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_hosts_bucket_lets_a_burst_through_then_the_rate() -> None:
    bucket = _Bucket(rate=100, burst=50)
    started = time.monotonic()
    taken = sum(bucket.take() for _ in range(200))
    assert 50 <= taken <= 50 + 100 * (time.monotonic() - started) + 1  # the burst, no more
    time.sleep(0.1)
    slept = time.monotonic() - started
    refilled = sum(bucket.take() for _ in range(200))
    assert refilled <= min(50, 100 * slept) + 2  # the rate, whatever the sleep took
    assert refilled >= 5
    time.sleep(1.0)
    assert bucket.report() > 0 and bucket.report() == 0  # once a second at most
