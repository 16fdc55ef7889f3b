"""Pause and resume, snapshots, rollback and branches, through the real server."""

from __future__ import annotations

import time

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import InvalidConfigError, SnapshotNotFoundError

COUNTER = (
    "nohup bash -c 'i=0; while true; do i=$((i+1)); echo $i > /root/count; sleep 0.05; done'"
    " >/dev/null 2>&1 &"
)


def count(sbx: Sandbox) -> int:
    return int(sbx.files.read("/root/count").strip() or 0)


def wait_counting(sbx: Sandbox, past: int = 0) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            value = count(sbx)
        except Exception:  # the loop has not written its first value yet
            value = 0
        if value > past:
            return value
        time.sleep(0.05)
    raise AssertionError(f"counter never went past {past}")


@pytest.fixture(scope="module")
def checkpoints(client: Sandlot) -> bool:
    """Whether the server checkpoints (CRIU ≥ 4.1 installed) or only freezes."""
    with Sandbox.create(client=client) as sbx:
        return sbx.pause().pause_mode == "checkpoint"


def test_counter_continues_across_pause_and_resume(sandbox: Sandbox, checkpoints: bool) -> None:
    sandbox.commands.run(COUNTER)
    before = wait_counting(sandbox, 5)
    info = sandbox.pause()
    assert info.status == "paused"
    assert info.pause_mode == ("checkpoint" if checkpoints else "freeze")
    time.sleep(1.5)
    info = sandbox.resume()
    assert info.status == "running"
    after = count(sandbox)
    # The loop went on from where it was, not from zero, and stood still while paused:
    # running through those 1.5 s would have added about 30.
    assert before <= after < before + 20, (before, after)
    assert wait_counting(sandbox, after) > after


def test_paused_sandbox_uses_no_memory_when_checkpointed(
    sandbox: Sandbox, checkpoints: bool
) -> None:
    if not checkpoints:
        pytest.skip("the server has no CRIU ≥ 4.1: pauses freeze in memory")
    sandbox.commands.run("python3 -c 'x = bytearray(64 << 20); import time; time.sleep(600)' &")
    time.sleep(0.5)
    assert sandbox.usage().memory_bytes > 60 << 20
    sandbox.pause()
    assert sandbox.refresh().status == "paused"
    assert sandbox.usage().memory_bytes == 0
    sandbox.resume()
    assert sandbox.usage().memory_bytes > 60 << 20


def test_files_and_a_listening_server_survive_resume(sandbox: Sandbox) -> None:
    sandbox.files.write("/root/notes.txt", "kept\n")
    sandbox.commands.run(
        "cd /root && nohup python3 -m http.server 8123 --bind 127.0.0.1 >/dev/null 2>&1 &"
    )
    probe = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8123/notes.txt"
    deadline = time.monotonic() + 10
    while sandbox.commands.run(probe).stdout != "200" and time.monotonic() < deadline:
        time.sleep(0.1)
    sandbox.pause()
    sandbox.resume()
    assert sandbox.files.read("/root/notes.txt") == "kept\n"
    assert sandbox.commands.run(probe).stdout == "200"


def test_calls_on_a_paused_sandbox_resume_it(sandbox: Sandbox) -> None:
    sandbox.pause()
    assert sandbox.commands.run("echo back").stdout == "back\n"
    assert sandbox.refresh().status == "running"


def test_resume_by_id(sandbox: Sandbox, client: Sandlot) -> None:
    sandbox.pause()
    again = Sandbox.resume(sandbox.id, client=client)
    assert again.id == sandbox.id
    assert again.status == "running"


def test_rollback_restores_files_and_processes(sandbox: Sandbox, checkpoints: bool) -> None:
    sandbox.commands.run(COUNTER)
    sandbox.files.write("/root/state.txt", "before\n")
    wait_counting(sandbox, 3)
    snap = sandbox.snapshots.create("before-changes")
    assert snap.has_memory is checkpoints
    at_snapshot = count(sandbox)
    sandbox.files.write("/root/state.txt", "after\n")
    sandbox.files.write("/root/extra.txt", "new\n")
    later = wait_counting(sandbox, at_snapshot + 20)

    info = sandbox.rollback("before-changes")
    assert info.id == sandbox.id
    assert info.status == "running"
    assert sandbox.files.read("/root/state.txt") == "before\n"
    assert not sandbox.files.exists("/root/extra.txt")
    if checkpoints:
        # The counter is back near its value at the snapshot, and counting again.
        value = count(sandbox)
        assert value < later
        assert wait_counting(sandbox, value) > value


def test_branch_diverges_from_its_parent(sandbox: Sandbox, client: Sandlot) -> None:
    sandbox.files.write("/root/shared.txt", "from parent\n")
    sandbox.snapshots.create("base-state")
    child = sandbox.branch("base-state", name="experiment")
    try:
        assert child.id != sandbox.id
        assert child.info.metadata["name"] == "experiment"
        assert child.info.snapshot_id is not None
        assert child.files.read("/root/shared.txt") == "from parent\n"
        child.files.write("/root/shared.txt", "changed in child\n")
        sandbox.files.write("/root/parent-only.txt", "p\n")
        assert sandbox.files.read("/root/shared.txt") == "from parent\n"
        assert not child.files.exists("/root/parent-only.txt")
    finally:
        child.kill()


def test_create_from_snapshot_and_snapshot_management(sandbox: Sandbox, client: Sandlot) -> None:
    sandbox.files.write("/root/marker", "m\n")
    snap = sandbox.snapshots.create("one", description="for a copy", memory=False)
    assert not snap.has_memory
    assert snap.size_bytes > 0
    assert [s.name for s in sandbox.snapshots.list()] == ["one"]
    with Sandbox.create_from_snapshot(snap.id, client=client) as copy:
        assert copy.files.read("/root/marker") == "m\n"
    with pytest.raises(InvalidConfigError):
        sandbox.snapshots.create("one")
    sandbox.snapshots.delete("one")
    assert sandbox.snapshots.list() == []
    with pytest.raises(SnapshotNotFoundError):
        sandbox.rollback("one")


def test_set_timeout_terminates_with_reason(client: Sandlot) -> None:
    sbx = Sandbox.create(client=client)
    info = sbx.set_timeout(1)
    assert info.timeout == 1
    final = sbx.wait_for("terminated", timeout=15)
    assert final.status_reason == "timeout"


def test_idle_sandbox_is_paused_and_activity_defers_it(client: Sandlot) -> None:
    with Sandbox.create(client=client, idle_timeout=3) as sbx:
        # Keep it busy past its idle timeout: it stays running.
        for _ in range(5):
            sbx.commands.run("true")
            time.sleep(0.8)
        assert sbx.refresh().status == "running"
        info = sbx.wait_for("paused", timeout=15)
        assert info.status_reason == "idle"


def test_ten_branches_of_one_snapshot_in_parallel(sandbox: Sandbox, client: Sandlot) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sandbox.files.write("/root/origin", "o\n")
    sandbox.snapshots.create("fan-out")

    def one(i: int) -> str:
        child = sandbox.branch("fan-out", name=f"b{i}")
        try:
            return child.commands.run("cat /root/origin").stdout
        finally:
            child.kill()

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(one, range(10))) == ["o\n"] * 10


def test_snapshot_patches_make_revisions_and_can_be_removed(
    sandbox: Sandbox, client: Sandlot
) -> None:
    sandbox.files.write("/root/base.txt", "base\n")
    sandbox.snapshots.create("patched")
    first = sandbox.snapshots.patch("patched", "echo one > /root/one.txt", description="add one")
    assert (first.status, first.revision, first.exit_code) == ("applied", 2, 0)
    second = sandbox.snapshots.patch("patched", "echo two > /root/two.txt")
    failed = sandbox.snapshots.patch("patched", "echo oops >&2; exit 3")
    assert (failed.status, failed.exit_code, failed.revision) == ("failed", 3, 3)
    assert "oops" in (failed.output or "")
    snap = next(s for s in sandbox.snapshots.list() if s.name == "patched")
    assert (snap.revision, snap.has_memory) == (3, False)
    with Sandbox.create_from_snapshot(snap.id, client=client) as copy:
        assert copy.commands.run("cat /root/base.txt /root/one.txt /root/two.txt").stdout == (
            "base\none\ntwo\n"
        )
    # The sandbox itself is untouched by patches of its snapshot.
    assert not sandbox.files.exists("/root/one.txt")

    remaining = sandbox.snapshots.delete_patch("patched", first.id)
    assert [p.id for p in remaining] == [second.id, failed.id]
    with Sandbox.create_from_snapshot(snap.id, client=client) as copy:
        assert copy.files.exists("/root/two.txt")
        assert not copy.files.exists("/root/one.txt")


def test_limits_given_at_create_survive_pause_and_resume(client: Sandlot) -> None:
    # A warm sandbox handed over with other limits must come back from a checkpoint
    # with those, not with the pool's.
    with Sandbox.create(client=client, resources={"vcpus": 1, "memory_mb": 768}) as sbx:
        assert sbx.usage().memory_limit_bytes == 768 << 20
        sbx.pause()
        sbx.resume()
        assert sbx.usage().memory_limit_bytes == 768 << 20


def test_an_attached_terminal_keeps_an_idle_sandbox_awake(client: Sandlot) -> None:
    with Sandbox.create(client=client, idle_timeout=2) as sbx:
        terminal = sbx.pty.create()
        time.sleep(5)  # quiet, but someone is connected
        assert sbx.refresh().status == "running"
        terminal.disconnect()
        assert sbx.wait_for("paused", timeout=15).status_reason == "idle"
