"""The sandbox state machine: the one table of allowed transitions."""

from __future__ import annotations

import enum

from sandlot.errors import InvalidStateError


class SandboxStatus(enum.StrEnum):
    CREATING = "creating"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    TERMINATED = "terminated"
    ERROR = "error"


S = SandboxStatus

CHECKPOINT = "checkpoint"
FREEZE = "freeze"
"""How a paused sandbox was paused: its processes dumped to disk, or frozen in memory."""

TRANSITIONS: dict[SandboxStatus, frozenset[SandboxStatus]] = {
    S.CREATING: frozenset({S.RUNNING, S.STOPPING, S.ERROR}),
    S.RUNNING: frozenset({S.PAUSED, S.STOPPING, S.ERROR}),
    S.PAUSED: frozenset({S.RUNNING, S.STOPPING, S.ERROR}),
    S.STOPPING: frozenset({S.TERMINATED, S.ERROR}),
    S.ERROR: frozenset({S.STOPPING}),
    S.TERMINATED: frozenset(),
}


def check_transition(sandbox_id: str, current: SandboxStatus, target: SandboxStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidStateError(
            f"sandbox {sandbox_id} is {current.value} and cannot become {target.value}",
            details={"status": current.value, "target": target.value},
        )


def require_running(sandbox_id: str, current: SandboxStatus) -> None:
    if current is not S.RUNNING:
        raise InvalidStateError(
            f"sandbox {sandbox_id} is {current.value}; this operation needs it running",
            details={"status": current.value},
        )
