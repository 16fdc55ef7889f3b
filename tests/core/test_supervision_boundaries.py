"""Supervision's decisions at their exact boundaries, beyond test_supervision.py.

An expiry or an idle timeout is a promise to a user about a second (or a microsecond):
a sandbox whose `expires_at` is now is ended this tick, one idle exactly its
`idle_timeout` is paused, and CPU use exactly at `IDLE_CPU_PERCENT` is not yet
activity. These tests sit on each edge and one step either side of it, and check over
every combination of what is known of a sandbox that a tick never decides two things
for one sandbox, and never pauses one it must not.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from sandlot.core.supervision import IDLE_CPU_PERCENT, Tick, Watched, decide
from sandlot.domain.states import SandboxStatus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TIMEOUT = 300.0
IDLE = Watched("sbx-edge", "org", SandboxStatus.RUNNING, idle_timeout=TIMEOUT, idle_for=TIMEOUT)
KINDS = ("expire", "check_alive", "active", "pause")
MICRO = timedelta(microseconds=1)


def decided(watched: Watched, now: datetime = NOW) -> list[str]:
    """The lists of the tick that name this one sandbox."""
    tick = decide([watched], now)
    return [kind for kind in KINDS if any(w.id == watched.id for w in getattr(tick, kind))]


def with_(**change: object) -> Watched:
    return dataclasses.replace(IDLE, **change)  # type: ignore[arg-type]


# ---- expiry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expired"),
    [
        (-timedelta(days=1), True),
        (-MICRO, True),
        (timedelta(0), True),
        (MICRO, False),
        (timedelta(days=1), False),
    ],
    ids=["a-day-ago", "a-microsecond-ago", "now", "in-a-microsecond", "tomorrow"],
)
def test_a_sandbox_expires_at_its_expiry_instant_and_not_before(
    offset: timedelta, expired: bool
) -> None:
    quiet = with_(idle_for=0.0, expires_at=NOW + offset)
    assert decided(quiet) == (["expire"] if expired else [])


@pytest.mark.parametrize("hours", [-8, 0, 2, 14])
def test_expiry_compares_instants_whatever_the_zone(hours: int) -> None:
    zone = timezone(timedelta(hours=hours))
    at_now = with_(idle_for=0.0, expires_at=NOW.astimezone(zone))
    assert decided(at_now) == ["expire"]
    assert decided(with_(idle_for=0.0, expires_at=(NOW + MICRO).astimezone(zone))) == []


def test_no_expiry_never_expires() -> None:
    far_future = datetime(9999, 12, 31, tzinfo=UTC)
    assert decided(with_(idle_for=0.0, expires_at=None), far_future) == []


@pytest.mark.parametrize(
    "change",
    [{"connected": False}, {"cpu_percent": 100.0}, {"pausing": True}, {"idle_timeout": 0}],
    ids=["disconnected", "busy-cpu", "pausing", "no-idle-timeout"],
)
def test_at_its_expiry_instant_a_sandbox_is_only_expired(change: dict[str, object]) -> None:
    assert decided(with_(expires_at=NOW, **change)) == ["expire"]


# ---- idleness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle_for", "paused"),
    [
        (0.0, False),
        (math.nextafter(TIMEOUT, 0.0), False),
        (TIMEOUT - 0.001, False),
        (TIMEOUT, True),
        (math.nextafter(TIMEOUT, math.inf), True),
        (TIMEOUT * 1000, True),
    ],
    ids=["fresh", "a-hair-short", "a-millisecond-short", "exactly", "a-hair-over", "long-gone"],
)
def test_an_idle_pause_comes_at_exactly_the_idle_timeout(idle_for: float, paused: bool) -> None:
    assert decided(with_(idle_for=idle_for)) == (["pause"] if paused else [])


@pytest.mark.parametrize("timeout", [0.25, 1.0, 59.5, 86_400.0])
def test_any_positive_timeout_is_honoured_to_the_edge(timeout: float) -> None:
    assert decided(with_(idle_timeout=timeout, idle_for=timeout)) == ["pause"]
    assert decided(with_(idle_timeout=timeout, idle_for=math.nextafter(timeout, 0.0))) == []


@pytest.mark.parametrize("timeout", [0.0, -0.0, -1.0, -math.inf])
def test_a_timeout_of_zero_or_less_never_pauses(timeout: float) -> None:
    assert decided(with_(idle_timeout=timeout, idle_for=1e12)) == []
    assert decided(with_(idle_timeout=timeout, idle_for=1e12, cpu_percent=100.0)) == []


@pytest.mark.parametrize(
    ("cpu", "kind"),
    [
        (0.0, "pause"),
        (math.nextafter(IDLE_CPU_PERCENT, 0.0), "pause"),
        (IDLE_CPU_PERCENT, "pause"),
        (math.nextafter(IDLE_CPU_PERCENT, math.inf), "active"),
        (400.0, "active"),
    ],
    ids=["none", "a-hair-under", "exactly", "a-hair-over", "four-cores"],
)
def test_cpu_use_counts_as_activity_only_above_the_threshold(cpu: float, kind: str) -> None:
    assert decided(with_(cpu_percent=cpu)) == [kind]


@pytest.mark.parametrize("change", [{"held": True}, {"pausing": True}, {"busy": True}])
def test_a_sandbox_held_open_is_neither_paused_nor_marked_active(
    change: dict[str, object],
) -> None:
    for cpu in (0.0, IDLE_CPU_PERCENT * 10):
        assert decided(with_(cpu_percent=cpu, idle_for=TIMEOUT * 10, **change)) == []


def test_a_lost_agent_is_checked_however_idle_or_busy_it_looked() -> None:
    for idle_for, cpu in itertools.product((0.0, TIMEOUT, TIMEOUT * 10), (0.0, 100.0)):
        lost = with_(connected=False, idle_for=idle_for, cpu_percent=cpu)
        assert decided(lost) == ["check_alive"]


# ---- many sandboxes, every combination ----------------------------------------------------


def every_combination() -> list[Watched]:
    """One sandbox for each mix of values on both sides of every edge."""
    values = itertools.product(
        (None, NOW, NOW + MICRO),  # expires_at
        (0.0, TIMEOUT),  # idle_timeout
        (math.nextafter(TIMEOUT, 0.0), TIMEOUT),  # idle_for
        (IDLE_CPU_PERCENT, math.nextafter(IDLE_CPU_PERCENT, math.inf)),  # cpu_percent
    )
    flags = itertools.product((False, True), repeat=4)  # busy, connected, held, pausing
    found: list[Watched] = []
    for status, timing, flagged in itertools.product(SandboxStatus, values, flags):
        found.append(Watched(f"sbx-{len(found):05d}", "org", status, *timing, *flagged))
    return found


@pytest.fixture(scope="module")
def grid() -> tuple[list[Watched], Tick]:
    watched = every_combination()
    return watched, decide(watched, NOW)


def test_a_tick_decides_at_most_one_thing_per_sandbox(grid: tuple[list[Watched], Tick]) -> None:
    watched, tick = grid
    named = [w.id for kind in KINDS for w in getattr(tick, kind)]
    assert len(named) == len(set(named)) and set(named) <= {w.id for w in watched}


def test_a_tick_keeps_the_order_it_was_given(grid: tuple[list[Watched], Tick]) -> None:
    watched, tick = grid
    position = {w.id: n for n, w in enumerate(watched)}
    for kind in KINDS:
        ids = [position[w.id] for w in getattr(tick, kind)]
        assert ids == sorted(ids) and ids, kind


def test_exactly_the_expired_are_expired(grid: tuple[list[Watched], Tick]) -> None:
    watched, tick = grid
    expired = {w.id for w in watched if w.expires_at is not None and w.expires_at <= NOW}
    assert {w.id for w in tick.expire} == expired


def test_only_a_connected_running_idle_sandbox_nobody_holds_is_paused(
    grid: tuple[list[Watched], Tick],
) -> None:
    _, tick = grid
    assert tick.pause
    for w in tick.pause:
        assert w.status is SandboxStatus.RUNNING and w.connected
        assert not (w.busy or w.held or w.pausing)
        assert w.idle_timeout > 0 and w.idle_for >= w.idle_timeout
        assert w.cpu_percent <= IDLE_CPU_PERCENT
        assert w.expires_at is None or w.expires_at > NOW


def test_only_running_sandboxes_are_checked_or_marked_active(
    grid: tuple[list[Watched], Tick],
) -> None:
    _, tick = grid
    for w in tick.check_alive:
        assert w.status is SandboxStatus.RUNNING and not w.connected and not w.busy
    for w in tick.active:
        assert w.status is SandboxStatus.RUNNING and w.connected and not w.held
        assert w.cpu_percent > IDLE_CPU_PERCENT and w.idle_timeout > 0
