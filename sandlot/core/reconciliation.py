"""What a server starting up does with each sandbox the store and the host disagree on.

After a crash or restart, the store's live rows and what the runtime still holds are
compared. Pauses and snapshots that were cut short are settled first (`lifecycle.py`
knows how); for the rest, `outcome` decides from the two states alone, and whatever the
host holds that no live row names is a leftover to remove.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sandlot.domain.states import SandboxStatus
from sandlot.runtime.base import RuntimeStatus


class Action(enum.Enum):
    ADOPT = "adopt"
    """Running on both sides: reconnect to its agent."""
    FINISH_DESTROY = "finish destroy"
    """A destroy was under way: finish it."""
    FAIL = "fail"
    """The two disagree: remove what the host has and record why."""


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str | None = None


def outcome(status: SandboxStatus, on_host: RuntimeStatus) -> Outcome:
    """The outcome for a live row in `status` whose sandbox the host reports `on_host`."""
    if status is SandboxStatus.RUNNING and on_host is RuntimeStatus.RUNNING:
        return Outcome(Action.ADOPT)
    if status is SandboxStatus.STOPPING:
        return Outcome(Action.FINISH_DESTROY)
    if on_host is RuntimeStatus.MISSING:
        return Outcome(Action.FAIL, "sandbox vanished while the server was down")
    return Outcome(
        Action.FAIL, f"sandbox was {status.value} but the runtime reports {on_host.value}"
    )


def leftovers(live: set[str], on_host: set[str]) -> set[str]:
    """Sandboxes the host holds that no live row names (warm ones among them)."""
    return on_host - live
