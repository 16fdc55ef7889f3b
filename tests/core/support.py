"""Small helpers for core's tests: a clock the test moves by hand (for rate limits and
rates that depend on elapsed time), and reading what a subscription holds."""

from __future__ import annotations

from sandlot.core.events import Event, Subscription


class FakeClock:
    """Stands in for the `time` module of one module under test: only `monotonic`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def drain(sub: Subscription, quiet: float = 0.05) -> list[Event]:
    """Every event the subscription yields until none comes for `quiet` seconds."""
    events: list[Event] = []
    while (event := await sub.next(timeout=quiet)) is not None:
        events.append(event)
    return events


async def join(sub: Subscription) -> None:
    """Make a live-only subscription join its bus (it does on its first read)."""
    assert await sub.next(timeout=0.01) is None
