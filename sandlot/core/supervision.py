"""What supervision does to each live sandbox on one tick, decided without doing it.

The decisions are plain functions of what the store and the server know of each
sandbox, so they are tested on their own; `SandboxService.supervise_once` gathers that
knowledge and carries the decisions out. One tick:

- a sandbox past its `expires_at` is destroyed (whatever else holds it);
- a running one whose agent connection is gone is checked on the host, and ended as
  failed if the host no longer runs it (one in a transition, or paused, is left alone);
- a running one idle for its `idle_timeout` is paused, where nothing holds it open: a
  connected interactive client, or CPU above `IDLE_CPU_PERCENT`, which counts as
  activity (a long build with nobody watching is working, not abandoned).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sandlot.domain.states import SandboxStatus

IDLE_CPU_PERCENT = 5.0
"""CPU use above which a sandbox counts as active, whoever is watching."""


@dataclass(frozen=True)
class Watched:
    """One live sandbox as supervision sees it."""

    id: str
    org_id: str
    status: SandboxStatus
    expires_at: datetime | None = None
    idle_timeout: float = 0
    """Seconds without activity before it is paused; 0 never."""
    idle_for: float = 0.0
    """Seconds since its last recorded activity."""
    cpu_percent: float = 0.0
    busy: bool = False
    """In the middle of a transition (its lock is held)."""
    connected: bool = True
    """Its agent connection is open."""
    held: bool = False
    """An interactive client (SSH, a PTY) keeps it open."""
    pausing: bool = False
    """An idle pause of it is under way already."""


@dataclass
class Tick:
    expire: list[Watched] = field(default_factory=list)
    check_alive: list[Watched] = field(default_factory=list)
    active: list[Watched] = field(default_factory=list)
    """Idle by the record, but busy on the CPU: their activity is recorded now."""
    pause: list[Watched] = field(default_factory=list)


def decide(watched: list[Watched], now: datetime) -> Tick:
    tick = Tick()
    for sandbox in watched:
        if sandbox.expires_at is not None and sandbox.expires_at <= now:
            tick.expire.append(sandbox)
            continue
        if sandbox.status is not SandboxStatus.RUNNING or sandbox.busy:
            continue  # paused on purpose, or in the middle of a transition
        if not sandbox.connected:
            tick.check_alive.append(sandbox)
            continue
        if sandbox.idle_timeout <= 0 or sandbox.held or sandbox.pausing:
            continue
        if sandbox.cpu_percent > IDLE_CPU_PERCENT:
            tick.active.append(sandbox)
        elif sandbox.idle_for >= sandbox.idle_timeout:
            tick.pause.append(sandbox)
    return tick
