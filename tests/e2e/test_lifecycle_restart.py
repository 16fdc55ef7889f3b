"""Paused sandboxes across server restarts, and crashes in the middle of a pause or a
resume: afterwards each sandbox is wholly in its old state or wholly in its new one.

A crash is made real by killing the server with SIGKILL; what it was doing at that
moment is then left on the host by hand with the same runtime the server uses (a
frozen cgroup, a finished dump) and in the store (the row as the server had written
it), since a kill cannot be timed to land between two steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import InvalidStateError, ResourceExhaustedError
from sandlot.runtime.agent_client import AgentClient
from sandlot.runtime.oci import OciRuntime
from sandlot.testing import ServerProcess
from tests.e2e.test_cleanup_and_restart import host_traces
from tests.e2e.test_lifecycle import COUNTER, count, wait_counting


def connect(srv: ServerProcess) -> Sandlot:
    return Sandlot(api_url=srv.url, api_key=srv.api_key)


def set_row(srv: ServerProcess, sandbox_id: str, **columns: object) -> None:
    """What the server had persisted when it died."""
    with sqlite3.connect(srv.data_dir / "sandlot.db") as db:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        db.execute(
            f"UPDATE sandboxes SET {assignments} WHERE id = ?", (*columns.values(), sandbox_id)
        )


def runtime_of(srv: ServerProcess) -> OciRuntime:
    return OciRuntime(srv.data_dir)


def started_counting(srv: ServerProcess) -> str:
    with connect(srv) as client:
        sbx = Sandbox.create(client=client)
        sbx.commands.run(COUNTER)
        wait_counting(sbx, 3)
        return sbx.id


def still_counting(srv: ServerProcess, sandbox_id: str) -> Sandbox:
    """The sandbox runs again with its counter going on from where it was."""
    client = connect(srv)
    sbx = Sandbox.get(sandbox_id, client=client)
    assert sbx.status == "running", sbx.info.status_reason
    value = count(sbx)
    assert value > 3
    assert wait_counting(sbx, value) > value
    return sbx


def test_paused_sandbox_survives_a_restart_and_resumes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    sandbox_id = started_counting(srv)
    with connect(srv) as client:
        sbx = Sandbox.get(sandbox_id, client=client)
        before = count(sbx)
        mode = sbx.pause().pause_mode
    srv.stop(signal.SIGKILL)
    srv.start()
    with connect(srv) as client:
        sbx = Sandbox.get(sandbox_id, client=client)
        assert sbx.status == "paused"
        assert sbx.info.pause_mode == mode
        sbx.resume()
        assert count(sbx) >= before
    still_counting(srv, sandbox_id).kill()
    assert host_traces(sandbox_id, srv.data_dir) == []


def test_crash_after_pause_was_persisted_before_the_dump(fresh_server: ServerProcess) -> None:
    """The store says paused, the sandbox still runs: the pause never happened."""
    srv = fresh_server
    sandbox_id = started_counting(srv)
    srv.stop(signal.SIGKILL)
    set_row(srv, sandbox_id, status="paused", pause_mode="checkpoint", paused_at=None)
    srv.start()
    still_counting(srv, sandbox_id).kill()


def test_crash_during_the_dump_with_the_sandbox_frozen(fresh_server: ServerProcess) -> None:
    """CRIU had frozen the processes (and the agent had stopped listening) when the
    server died: they are thawed and the agent woken."""
    srv = fresh_server
    sandbox_id = started_counting(srv)
    srv.stop(signal.SIGKILL)
    runtime = runtime_of(srv)

    async def quiesce_and_freeze() -> None:
        client = await AgentClient.connect(runtime.agent_endpoint(sandbox_id), 10)
        await client.quiesce()
        await runtime.freeze(sandbox_id)

    asyncio.run(quiesce_and_freeze())
    set_row(srv, sandbox_id, status="paused", pause_mode="checkpoint", paused_at=None)
    srv.start()
    still_counting(srv, sandbox_id).kill()


def test_crash_after_the_dump_before_resume_was_persisted(fresh_server: ServerProcess) -> None:
    """The dump finished but the row still says running (or a resume died before its
    restore): the sandbox is paused, whole, and resumes."""
    srv = fresh_server
    runtime = runtime_of(srv)
    if not runtime.can_checkpoint:
        pytest.skip(f"no usable CRIU: {runtime.criu.problem}")
    sandbox_id = started_counting(srv)
    srv.stop(signal.SIGKILL)

    async def dump() -> None:
        client = await AgentClient.connect(runtime.agent_endpoint(sandbox_id), 10)
        await client.quiesce()
        await runtime.checkpoint(sandbox_id)

    asyncio.run(dump())
    srv.start()
    with connect(srv) as client:
        sbx = Sandbox.get(sandbox_id, client=client)
        assert sbx.status == "paused"
        assert sbx.info.pause_mode == "checkpoint"
        sbx.resume()
    still_counting(srv, sandbox_id).kill()


def test_kill_during_an_inflight_pause_leaves_one_whole_state(
    fresh_server: ServerProcess,
) -> None:
    """A real kill at some moment of a real pause: running or paused, never between."""
    srv = fresh_server
    sandbox_id = started_counting(srv)

    def pause() -> None:
        # The server dies under the request: whatever it answers is beside the point.
        with connect(srv) as client, contextlib.suppress(Exception):
            Sandbox.get(sandbox_id, client=client).pause()

    worker = threading.Thread(target=pause)
    worker.start()
    time.sleep(0.08)  # inside the pause: after the row, around the dump
    srv.stop(signal.SIGKILL)
    worker.join()
    srv.start()
    with connect(srv) as client:
        sbx = Sandbox.get(sandbox_id, client=client)
        assert sbx.status in ("running", "paused"), sbx.info.status_reason
        if sbx.status == "paused":
            sbx.resume()
    still_counting(srv, sandbox_id).kill()


def test_interrupted_snapshot_is_removed_at_start(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with connect(srv) as client:
        sbx = Sandbox.create(client=client)
        snap = sbx.snapshots.create("kept", memory=False)
    srv.stop(signal.SIGKILL)
    with sqlite3.connect(srv.data_dir / "sandlot.db") as db:
        db.execute("UPDATE snapshots SET status = 'creating' WHERE id = ?", (snap.id,))
    assert (srv.data_dir / "snapshots" / snap.id).is_dir()
    srv.start()
    with connect(srv) as client:
        assert Sandbox.get(sbx.id, client=client).snapshots.list() == []
    assert not Path(srv.data_dir / "snapshots" / snap.id).exists()


def test_snapshot_quota_refuses_with_resource_exhausted(tmp_path: Path) -> None:
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={"SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_ORG_MAX_SNAPSHOTS": "1"},
    )
    srv.data_dir.mkdir()
    srv.start()
    try:
        with connect(srv) as client, Sandbox.create(client=client) as sbx:
            sbx.snapshots.create("only", memory=False)
            with pytest.raises(ResourceExhaustedError) as refused:
                sbx.snapshots.create("one-too-many", memory=False)
            assert refused.value.details["quota"] == "snapshots"
            assert not refused.value.retryable
            sbx.snapshots.delete("only")
            sbx.snapshots.create("fits-again", memory=False)
    finally:
        srv.destroy_all()
        srv.stop()


def test_without_auto_resume_calls_on_a_paused_sandbox_are_refused(tmp_path: Path) -> None:
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={"SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_AUTO_RESUME": "false"},
    )
    srv.data_dir.mkdir()
    srv.start()
    try:
        with connect(srv) as client, Sandbox.create(client=client) as sbx:
            sbx.pause()
            with pytest.raises(InvalidStateError) as refused:
                sbx.commands.run("true")
            assert not refused.value.retryable
            assert "paused" in refused.value.message
            assert sbx.refresh().status == "paused"
            sbx.resume()
            assert sbx.commands.run("echo ok").stdout == "ok\n"
    finally:
        srv.destroy_all()
        srv.stop()
