from __future__ import annotations

import pytest

from sandlot.domain.states import TRANSITIONS, SandboxStatus, check_transition, require_running
from sandlot.errors import InvalidStateError


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(SandboxStatus)


def test_terminated_is_final() -> None:
    for target in SandboxStatus:
        with pytest.raises(InvalidStateError):
            check_transition("sbx-x", SandboxStatus.TERMINATED, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("creating", "running"),
        ("running", "paused"),
        ("paused", "running"),
        ("running", "stopping"),
        ("stopping", "terminated"),
        ("error", "stopping"),
    ],
)
def test_allowed(current: str, target: str) -> None:
    check_transition("sbx-x", SandboxStatus(current), SandboxStatus(target))


def test_refusal_names_both_states() -> None:
    with pytest.raises(InvalidStateError) as err:
        check_transition("sbx-x", SandboxStatus.CREATING, SandboxStatus.PAUSED)
    assert err.value.details == {"status": "creating", "target": "paused"}
    assert not err.value.retryable


def test_require_running() -> None:
    require_running("sbx-x", SandboxStatus.RUNNING)
    with pytest.raises(InvalidStateError, match="paused"):
        require_running("sbx-x", SandboxStatus.PAUSED)
