"""Supervision's decisions for one tick, from what is known of each live sandbox."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from sandlot.core.supervision import IDLE_CPU_PERCENT, Watched, decide
from sandlot.domain.states import SandboxStatus

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
IDLE = Watched("sbx-idle", "org", SandboxStatus.RUNNING, idle_timeout=60, idle_for=61)


def only(watched: Watched) -> dict[str, list[str]]:
    tick = decide([watched], NOW)
    return {
        kind: [w.id for w in getattr(tick, kind)]
        for kind in ("expire", "check_alive", "active", "pause")
        if getattr(tick, kind)
    }


def test_an_idle_sandbox_is_paused() -> None:
    assert only(IDLE) == {"pause": ["sbx-idle"]}


@pytest.mark.parametrize(
    "change",
    [
        {"idle_for": 59},
        {"idle_timeout": 0},
        {"held": True},
        {"pausing": True},
        {"busy": True},
        {"status": SandboxStatus.PAUSED},
        {"status": SandboxStatus.CREATING},
        {"status": SandboxStatus.STOPPING},
    ],
)
def test_what_keeps_a_sandbox_from_an_idle_pause(change: dict[str, object]) -> None:
    assert only(dataclasses.replace(IDLE, **change)) == {}  # type: ignore[arg-type]


def test_cpu_use_counts_as_activity() -> None:
    busy = dataclasses.replace(IDLE, cpu_percent=IDLE_CPU_PERCENT + 1)
    assert only(busy) == {"active": ["sbx-idle"]}


@pytest.mark.parametrize("status", list(SandboxStatus))
def test_expiry_comes_first_whatever_else_holds_the_sandbox(status: SandboxStatus) -> None:
    expired = dataclasses.replace(
        IDLE, status=status, expires_at=NOW - timedelta(seconds=1), busy=True, held=True
    )
    assert only(expired) == {"expire": ["sbx-idle"]}
    assert only(dataclasses.replace(expired, expires_at=NOW + timedelta(seconds=1))) == {}


def test_a_running_sandbox_without_its_agent_is_checked_not_paused() -> None:
    lost = dataclasses.replace(IDLE, connected=False)
    assert only(lost) == {"check_alive": ["sbx-idle"]}
    assert only(dataclasses.replace(lost, busy=True)) == {}
    assert only(dataclasses.replace(lost, status=SandboxStatus.PAUSED)) == {}


def test_each_sandbox_is_decided_on_its_own() -> None:
    others = [
        dataclasses.replace(IDLE, id="a"),
        dataclasses.replace(IDLE, id="b", connected=False),
        dataclasses.replace(IDLE, id="c", expires_at=NOW),
        dataclasses.replace(IDLE, id="d", idle_for=1),
    ]
    tick = decide(others, NOW)
    assert [w.id for w in tick.pause] == ["a"]
    assert [w.id for w in tick.check_alive] == ["b"]
    assert [w.id for w in tick.expire] == ["c"]
