"""What start-up does with each live row, from its status and the host's, for every
pair of the two; and which of the host's sandboxes are leftovers."""

from __future__ import annotations

import itertools

import pytest

from sandlot.core.reconciliation import Action, leftovers, outcome
from sandlot.domain.states import SandboxStatus
from sandlot.runtime.base import RuntimeStatus

S, R = SandboxStatus, RuntimeStatus


@pytest.mark.parametrize(("status", "on_host"), list(itertools.product(S, R)))
def test_every_pair_of_states_has_one_outcome(
    status: SandboxStatus, on_host: RuntimeStatus
) -> None:
    decided = outcome(status, on_host)
    if status is S.RUNNING and on_host is R.RUNNING:
        assert decided.action is Action.ADOPT
    elif status is S.STOPPING:
        assert decided.action is Action.FINISH_DESTROY
    else:
        assert decided.action is Action.FAIL and decided.reason
        if on_host is R.MISSING:
            assert decided.reason == "sandbox vanished while the server was down"
        else:
            assert status.value in decided.reason and on_host.value in decided.reason


def test_leftovers_are_what_the_host_holds_and_no_live_row_names() -> None:
    assert leftovers({"a", "b"}, {"b", "c", "warm"}) == {"c", "warm"}
    assert leftovers({"a"}, set()) == set()
