"""The sandbox state machine, pair by pair, against a life cycle written out here.

test_transitions.py checks the status writer against `TRANSITIONS` itself, so an edit
to the table (a shortcut from running straight to terminated, a way back out of
terminated) would change what it expects along with what it tests. Here the life cycle
is stated independently, and every one of the 36 (current, target) pairs is checked
against it in `check_transition`, with the refusal the API answers; the shape of the
machine (every sandbox can always be ended, and only through stopping) is checked on
its own; and a write through `StatusWriter` is shown to be all or nothing: a refused
one persists none of its other changes and publishes no event.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from sandlot.core.events import EventBus, EventFilter
from sandlot.core.transitions import StatusWriter
from sandlot.domain.states import TRANSITIONS, SandboxStatus, check_transition, require_running
from sandlot.errors import InvalidStateError, error_from_payload
from sandlot.store import keys
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow
from tests.core.support import drain, join

S = SandboxStatus

LIFE_CYCLE: set[tuple[SandboxStatus, SandboxStatus]] = {
    (S.CREATING, S.RUNNING),  # its agent answered
    (S.CREATING, S.STOPPING),  # destroyed, or given up on, before it ran
    (S.CREATING, S.ERROR),  # the host could not start it
    (S.RUNNING, S.PAUSED),  # paused by hand or when idle
    (S.RUNNING, S.STOPPING),  # destroyed, or past its timeout
    (S.RUNNING, S.ERROR),  # died on its own
    (S.PAUSED, S.RUNNING),  # resumed
    (S.PAUSED, S.STOPPING),  # destroyed while paused
    (S.PAUSED, S.ERROR),  # its checkpoint would not restore
    (S.STOPPING, S.TERMINATED),  # the host let go of it
    (S.STOPPING, S.ERROR),  # the host would not let go
    (S.ERROR, S.STOPPING),  # a failed sandbox can still be destroyed
}
"""Every transition a sandbox may make, and why; every other pair is refused."""

PAIRS = list(itertools.product(SandboxStatus, SandboxStatus))
ALLOWED = [pair for pair in PAIRS if pair in LIFE_CYCLE]
REFUSED = [pair for pair in PAIRS if pair not in LIFE_CYCLE]


def pair_id(pair: tuple[SandboxStatus, SandboxStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


# ---- the table, pair by pair --------------------------------------------------------------


def test_the_life_cycle_names_every_pair_once() -> None:
    assert len(PAIRS) == len(SandboxStatus) ** 2 == len(ALLOWED) + len(REFUSED)
    assert set(TRANSITIONS) == set(SandboxStatus)


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=map(pair_id, ALLOWED))
def test_an_allowed_transition_passes(current: SandboxStatus, target: SandboxStatus) -> None:
    assert target in TRANSITIONS[current]
    check_transition("sbx-table", current, target)


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=map(pair_id, REFUSED))
def test_a_refused_transition_answers_invalid_state(
    current: SandboxStatus, target: SandboxStatus
) -> None:
    assert target not in TRANSITIONS[current]
    with pytest.raises(InvalidStateError) as caught:
        check_transition("sbx-table", current, target)
    err = caught.value
    assert err.code == "INVALID_STATE" and err.status == 409 and err.retryable is False
    assert err.details == {"status": current.value, "target": target.value}
    assert "sbx-table" in err.message
    assert f"is {current.value}" in err.message and f"become {target.value}" in err.message
    rebuilt = error_from_payload(err.to_dict())
    assert isinstance(rebuilt, InvalidStateError) and rebuilt.details == err.details


# ---- the shape of the machine -------------------------------------------------------------


def reachable(start: SandboxStatus) -> set[SandboxStatus]:
    seen, todo = set(), [start]
    while todo:
        for target in TRANSITIONS[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


@pytest.mark.parametrize("status", list(SandboxStatus))
def test_no_status_becomes_itself(status: SandboxStatus) -> None:
    """Pausing a paused sandbox or resuming a running one is refused, not a no-op write."""
    assert status not in TRANSITIONS[status]


@pytest.mark.parametrize("status", [s for s in SandboxStatus if s is not S.TERMINATED])
def test_every_sandbox_can_still_be_ended(status: SandboxStatus) -> None:
    assert S.TERMINATED in reachable(status)


def test_every_status_is_reachable_from_creation() -> None:
    assert reachable(S.CREATING) | {S.CREATING} == set(SandboxStatus)


def test_only_stopping_ends_a_sandbox_so_every_ending_cleans_up() -> None:
    assert {c for c in SandboxStatus if S.TERMINATED in TRANSITIONS[c]} == {S.STOPPING}


def test_terminated_is_the_only_final_status() -> None:
    assert [s for s in SandboxStatus if not TRANSITIONS[s]] == [S.TERMINATED]
    assert reachable(S.TERMINATED) == set()


@pytest.mark.parametrize("status", list(SandboxStatus))
def test_only_a_running_sandbox_is_running(status: SandboxStatus) -> None:
    if status is S.RUNNING:
        require_running("sbx-table", status)
        return
    with pytest.raises(InvalidStateError) as caught:
        require_running("sbx-table", status)
    assert caught.value.details == {"status": status.value}


# ---- a write through the status writer is all or nothing ----------------------------------


def add_sandbox(db: Database, status: SandboxStatus) -> str:
    with db.session() as s:
        org = keys.create_org(s, "table")
        s.add(
            SandboxRow(
                id="sbx-table", org_id=org.id, template="base", template_digest="d", rootfs="/",
                status=status.value, status_reason="before", vcpus=1, memory_mb=512,
                disk_mb=1024, env={}, meta={}, idle_timeout=600, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
        return org.id


def snapshot(db: Database) -> dict[str, object]:
    with db.session() as s:
        row = sandbox_rows.get(s, "sbx-table")
        assert row is not None
        return row.as_dict()


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=map(pair_id, PAIRS))
async def test_a_status_write_persists_and_publishes_everything_or_nothing(
    db: Database, current: SandboxStatus, target: SandboxStatus
) -> None:
    org_id = add_sandbox(db, current)
    before = snapshot(db)
    events = EventBus()
    writer = StatusWriter(db, events)
    with events.subscribe(EventFilter(org_id=org_id, types=frozenset({"status"}))) as sub:
        await join(sub)
        try:
            writer.set("sbx-table", target, reason="why", changes={"address": "10.0.0.9"})
        except InvalidStateError:
            assert (current, target) in REFUSED
        seen = await drain(sub)
    after = snapshot(db)
    if (current, target) in REFUSED:
        assert after == before and seen == [] and events.published == 0
        return
    changed = {column for column in after if after[column] != before[column]}
    assert changed == {"status", "status_reason", "address"}
    assert (after["status"], after["status_reason"]) == (target.value, "why")
    assert [(e.sandbox_id, e.data) for e in seen] == [
        ("sbx-table", {"status": target.value, "reason": "why"})
    ]
