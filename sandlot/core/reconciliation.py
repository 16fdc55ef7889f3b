"""What a server starting up does with each sandbox the store and the host disagree on.

After a crash or restart, the store's live rows and what the runtime still holds are
compared. A pause, resume or snapshot that was cut short is recovered first (`recovery`
decides, `lifecycle.py` carries it out); for the rest, `outcome` decides from the two
states alone, and whatever the host holds that no live row names is a leftover.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.states import FREEZE, SandboxStatus


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


class Recovery(enum.Enum):
    NONE = "none"
    """Nothing was cut short: the ordinary outcome applies."""
    STAYS_PAUSED = "stays paused"
    """Paused, and the host holds it paused the same way (frozen, or dumped to disk)."""
    FINISH_RESUME = "finish resume"
    """A pause cut short left its processes where they were: thaw, re-plug, reconnect."""
    BACK_TO_PAUSED = "back to paused"
    """A resume cut short: the dump is still whole on disk, so it is paused again."""
    THAW = "thaw"
    """A snapshot cut short left it frozen: thaw, then the ordinary outcome applies."""


def recovery(status: SandboxStatus, pause_mode: str | None, on_host: RuntimeStatus) -> Recovery:
    """What a pause, resume or snapshot cut short by a crash needs; `pause_mode` is how
    the store says a paused sandbox was paused (FREEZE or CHECKPOINT)."""
    if status is SandboxStatus.PAUSED:
        if on_host is RuntimeStatus.CHECKPOINTED or (
            on_host is RuntimeStatus.PAUSED and pause_mode == FREEZE
        ):
            return Recovery.STAYS_PAUSED
        if on_host in (RuntimeStatus.RUNNING, RuntimeStatus.PAUSED):
            return Recovery.FINISH_RESUME
    elif status is SandboxStatus.RUNNING:
        if on_host is RuntimeStatus.CHECKPOINTED:
            return Recovery.BACK_TO_PAUSED
        if on_host is RuntimeStatus.PAUSED:
            return Recovery.THAW
    return Recovery.NONE
