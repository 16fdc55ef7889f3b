"""Core's sandbox life over an in-memory host (`fake_host.py`) and a real SQLite store:
what each operation records, what it asks of the host and in which order, and what a
host failure leaves behind. No root, no sandboxes: the decisions alone.

The end-to-end suites run the same paths on runc and gVisor; here each branch (a
checkpoint that fails and falls back to a freeze, a resume that fails, a crash in the
middle of a pause, a sandbox that vanished while the server was down) is forced at will.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sandlot.domain.host_values import RuntimeStatus
from sandlot.domain.states import CHECKPOINT, FREEZE, SandboxStatus
from sandlot.errors import InvalidConfigError, SandboxUnavailableError
from sandlot.store import sandboxes as sandbox_rows
from sandlot.store.tables import SnapshotRow
from tests.core.fake_host import FakeHost
from tests.core.world import World, build


async def test_a_created_sandbox_is_running_on_the_host_and_in_the_store(world: World) -> None:
    view = await world.create()
    assert view.status is SandboxStatus.RUNNING
    assert world.host.sandboxes[view.id] is RuntimeStatus.RUNNING
    assert world.calls_on(view.id) == ["start", "connect"]
    with world.db.session() as s:
        row = sandbox_rows.get(s, view.id)
        assert row is not None and row.address == world.host.addresses[view.id]
    assert world.service.live.is_live(view.id)


async def test_a_failed_start_records_an_error_without_host_words_and_leaves_nothing(
    world: World,
) -> None:
    world.host.failing.add("start")
    with pytest.raises(SandboxUnavailableError) as caught:
        await world.create()
    assert "/var/lib/host" not in caught.value.message
    [(_, sandbox_id), *_] = world.host.calls
    status, reason = world.row_status(sandbox_id)
    assert status == "error" and reason is not None and "failed to start" in reason
    assert "/var/lib/host" not in reason
    assert "destroy" in world.calls_on(sandbox_id) and sandbox_id not in world.host.sandboxes


async def test_destroy_ends_the_sandbox_on_the_host_closes_its_agent_and_is_idempotent(
    world: World,
) -> None:
    view = await world.create()
    session = world.host.sessions[view.id]
    ended = await world.service.sandboxes.destroy(world.org, view.id)
    assert ended.status is SandboxStatus.TERMINATED and ended.status_reason == "destroyed"
    assert session.closed and view.id not in world.host.sandboxes
    again = await world.service.sandboxes.destroy(world.org, view.id)
    assert again.status is SandboxStatus.TERMINATED
    assert world.calls_on(view.id).count("destroy") == 1


async def test_a_pause_checkpoints_after_quiescing_the_agent_and_unplugging_its_network(
    world: World,
) -> None:
    view = await world.create()
    session = world.host.sessions[view.id]
    paused = await world.service.lifecycle.pause(world.org, view.id)
    assert paused.status is SandboxStatus.PAUSED and paused.pause_mode == CHECKPOINT
    assert session.quiesced and not world.service.live.is_live(view.id)
    assert world.calls_on(view.id)[-2:] == ["unplug", "checkpoint"]
    assert world.host.sandboxes[view.id] is RuntimeStatus.CHECKPOINTED

    resumed = await world.service.lifecycle.resume(world.org, view.id)
    assert resumed.status is SandboxStatus.RUNNING and resumed.pause_mode is None
    assert world.calls_on(view.id)[-3:-2] == ["restore"]
    assert {"plug", "connect"} == set(world.calls_on(view.id)[-2:])
    assert world.service.live.is_live(view.id)


async def test_a_host_that_cannot_checkpoint_freezes(tmp_path: Path) -> None:
    w = build(tmp_path, FakeHost(can_checkpoint=False))
    try:
        view = await w.create()
        paused = await w.service.lifecycle.pause(w.org, view.id)
        assert paused.pause_mode == FREEZE and w.calls_on(view.id)[-1] == "freeze"
        assert w.host.sessions[view.id].closed and not w.host.sessions[view.id].quiesced
        with pytest.raises(InvalidConfigError, match="no CRIU"):
            await w.service.snapshots.snapshot(w.org, view.id, memory=True)
        await w.service.lifecycle.resume(w.org, view.id)
        assert w.calls_on(view.id)[-2] == "thaw"
    finally:
        await w.service.close()


async def test_a_failed_checkpoint_falls_back_to_a_freeze_and_says_why(world: World) -> None:
    view = await world.create()
    world.host.failing.add("checkpoint")
    paused = await world.service.lifecycle.pause(world.org, view.id)
    assert paused.status is SandboxStatus.PAUSED and paused.pause_mode == FREEZE
    assert paused.status_reason is not None and "checkpoint failed" in paused.status_reason
    assert "/var/lib/host" not in paused.status_reason
    # The interface taken out for the dump is given back before the freeze.
    assert world.calls_on(view.id)[-3:] == ["checkpoint", "plug", "freeze"]


async def test_a_failed_freeze_leaves_the_sandbox_running_and_reachable(tmp_path: Path) -> None:
    w = build(tmp_path, FakeHost(can_checkpoint=False, failing={"freeze"}))
    try:
        view = await w.create()
        with pytest.raises(SandboxUnavailableError) as caught:
            await w.service.lifecycle.pause(w.org, view.id)
        assert "/var/lib/host" not in caught.value.message
        assert w.row_status(view.id)[0] == "running"
        assert w.service.live.is_live(view.id) and w.calls_on(view.id)[-1] == "connect"
    finally:
        await w.service.close()


async def test_a_failed_resume_keeps_the_sandbox_paused_with_its_images(world: World) -> None:
    view = await world.create()
    await world.service.lifecycle.pause(world.org, view.id)
    world.host.failing.add("restore")
    with pytest.raises(SandboxUnavailableError):
        await world.service.lifecycle.resume(world.org, view.id)
    assert world.row_status(view.id)[0] == "paused"
    assert world.host.sandboxes[view.id] is RuntimeStatus.CHECKPOINTED
    world.host.failing.clear()
    assert (await world.service.lifecycle.resume(world.org, view.id)).status.value == "running"


async def test_work_on_a_paused_sandbox_resumes_it_first(world: World) -> None:
    view = await world.create()
    await world.service.lifecycle.pause(world.org, view.id)
    outcome = await world.service.work.run_command(world.org, view.id, ["true"])
    assert outcome.exit_code == 0 and world.row_status(view.id)[0] == "running"
    assert world.host.sessions[view.id].commands == [["true"]]


async def test_a_snapshot_with_memory_reconnects_after_and_is_recorded_ready(
    world: World,
) -> None:
    view = await world.create()
    before = world.host.sessions[view.id]
    snap = await world.service.snapshots.snapshot(world.org, view.id, "first")
    assert snap.has_memory and snap.size_bytes == 4096 and snap.name == "first"
    assert before.quiesced and world.host.sessions[view.id] is not before
    assert world.calls_on(view.id)[-4:] == ["unplug", "snapshot", "plug", "connect"]
    assert [s.id for s in world.service.snapshot_store.list_snapshots(world.org)] == [snap.id]


async def test_a_failed_snapshot_leaves_no_record_and_the_sandbox_running(world: World) -> None:
    view = await world.create()
    world.host.failing.add("snapshot")
    with pytest.raises(SandboxUnavailableError):
        await world.service.snapshots.snapshot(world.org, view.id, "broken")
    assert world.service.snapshot_store.list_snapshots(world.org) == []
    assert world.row_status(view.id)[0] == "running" and world.service.live.is_live(view.id)


async def test_rollback_restarts_in_place_and_a_failed_one_is_an_error(world: World) -> None:
    view = await world.create()
    snap = await world.service.snapshots.snapshot(world.org, view.id, "s", memory=False)
    back = await world.service.snapshots.rollback(world.org, view.id, "s")
    assert back.id == view.id and back.status is SandboxStatus.RUNNING
    assert world.calls_on(view.id)[-2:] == ["restart", "connect"]
    world.host.failing.add("restart")
    with pytest.raises(SandboxUnavailableError, match=snap.name):
        await world.service.snapshots.rollback(world.org, view.id, snap.id)
    status, reason = world.row_status(view.id)
    assert status == "error" and reason is not None and "/var/lib/host" not in reason


@pytest.mark.parametrize(
    ("host_status", "expected", "reason"),
    [
        (RuntimeStatus.RUNNING, "running", None),
        (RuntimeStatus.MISSING, "error", "sandbox vanished while the server was down"),
        (RuntimeStatus.STOPPED, "error", "sandbox was running but the runtime reports stopped"),
    ],
)
async def test_reconcile_after_a_restart(
    tmp_path: Path, host_status: RuntimeStatus, expected: str, reason: str | None
) -> None:
    first = build(tmp_path, FakeHost())
    view = await first.create()
    await first.service.close()  # the server stops; the sandbox outlives it
    host = first.host
    if host_status is RuntimeStatus.MISSING:
        del host.sandboxes[view.id]
    else:
        host.sandboxes[view.id] = host_status
    host.sandboxes["sbx-leftover"] = RuntimeStatus.RUNNING
    host.addresses["sbx-stray"] = "10.0.0.99"
    second = build(tmp_path, host, first.db)
    try:
        await second.service.start()
        status, why = second.row_status(view.id)
        assert status == expected and (reason is None or why == reason)
        assert second.service.live.is_live(view.id) is (expected == "running")
        assert "sbx-leftover" not in host.sandboxes and "sbx-stray" not in host.addresses
        assert ("adopt_network", view.id) in host.calls
    finally:
        await second.service.close()


async def test_a_pause_cut_short_by_a_crash_is_finished_as_a_resume(tmp_path: Path) -> None:
    first = build(tmp_path, FakeHost())
    view = await first.create()
    await first.service.close()
    with first.db.session() as s:  # recorded paused; the dump never happened
        row = sandbox_rows.get(s, view.id)
        assert row is not None
        row.status, row.pause_mode, row.paused_at = "paused", CHECKPOINT, datetime.now(UTC)
    second = build(tmp_path, first.host, first.db)
    try:
        await second.service.start()
        assert second.row_status(view.id)[0] == "running"
        assert second.calls_on(view.id)[-3:] == ["thaw", "plug", "connect"]
    finally:
        await second.service.close()


async def test_supervision_expires_old_sandboxes_and_notices_dead_ones(world: World) -> None:
    expired, dead = await world.create(), await world.create()
    with world.db.session() as s:
        row = sandbox_rows.get(s, expired.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    world.host.sandboxes[dead.id] = RuntimeStatus.STOPPED
    await world.host.sessions[dead.id].close()  # its agent's connection drops with it
    await world.service.supervision.run()
    assert world.row_status(expired.id) == ("terminated", "timeout")
    assert world.row_status(dead.id) == ("error", "sandbox stopped unexpectedly")
    assert dead.id not in world.host.sandboxes


async def test_a_snapshot_cut_short_by_a_crash_is_removed_at_start_and_a_taken_one_kept(
    tmp_path: Path,
) -> None:
    first = build(tmp_path, FakeHost())
    view = await first.create()
    kept = await first.service.snapshots.snapshot(first.org, view.id, "kept", memory=False)
    cut = await first.service.snapshots.snapshot(first.org, view.id, "cut", memory=False)
    await first.service.close()
    with first.db.session() as s:  # recorded as being taken when the server died
        row = s.get(SnapshotRow, cut.id)
        assert row is not None
        row.status = "creating"
    store = first.service.snapshot_store
    store.snapshot_dir(cut.id).mkdir(exist_ok=True)
    second = build(tmp_path, first.host, first.db)
    try:
        await second.service.start()
        held = second.service.snapshot_store.list_snapshots(first.org)
        assert [snap.id for snap in held] == [kept.id]
        assert not store.snapshot_dir(cut.id).exists()
    finally:
        await second.service.close()


async def test_network_changes_need_a_networked_host(tmp_path: Path) -> None:
    w = build(tmp_path, FakeHost(networked=False))
    try:
        view = await w.create()
        with pytest.raises(InvalidConfigError, match="networking is turned off"):
            await w.service.network.update(w.org, view.id, {"egress": {"deny": ["1.1.1.1"]}})
    finally:
        await w.service.close()


async def test_network_changes_merge_into_the_policy_and_reach_the_host(world: World) -> None:
    view = await world.create()
    changed = await world.service.network.update(
        world.org, view.id, {"egress": {"allow": ["example.com"]}}
    )
    assert changed.network is not None
    assert world.host.policies[view.id].to_dict() == changed.network
    assert world.calls_on(view.id)[-1] == "apply_policy"
