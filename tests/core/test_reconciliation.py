"""What start-up does with each live row, from its status and the host's, for every
pair of the two; and which of the host's sandboxes are leftovers."""

from __future__ import annotations

import itertools

import pytest

from sandlot.core.reconciliation import Action, Recovery, leftovers, outcome, recovery
from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.states import SandboxStatus

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


RECOVERIES = {
    # (status in the store, on the host): what was cut short, whatever the pause mode
    (S.PAUSED, R.CHECKPOINTED): Recovery.STAYS_PAUSED,
    (S.PAUSED, R.PAUSED): Recovery.FINISH_RESUME,  # frozen for a dump that never came
    (S.PAUSED, R.RUNNING): Recovery.FINISH_RESUME,  # the dump never began
    (S.RUNNING, R.CHECKPOINTED): Recovery.BACK_TO_PAUSED,  # a resume cut short
    (S.RUNNING, R.PAUSED): Recovery.THAW,  # a snapshot cut short
}


@pytest.mark.parametrize(
    ("status", "mode", "on_host"), list(itertools.product(S, ["checkpoint", "freeze", None], R))
)
def test_what_a_crash_cut_short_is_recovered_as_the_table_says(
    status: SandboxStatus, mode: str | None, on_host: RuntimeStatus
) -> None:
    expected = RECOVERIES.get((status, on_host), Recovery.NONE)
    if (status, mode, on_host) == (S.PAUSED, "freeze", R.PAUSED):
        expected = Recovery.STAYS_PAUSED  # paused by freezing: frozen is how it should be
    assert recovery(status, mode, on_host) is expected
