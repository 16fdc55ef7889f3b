"""Faults from outside: a killed agent, a server killed mid-operation, a store that
refuses writes, a full data disk. After each, the server must answer clearly, heal on
restart, and `sandlot doctor --check` must find nothing out of place.

Every test runs its own server (`fresh_server`): they kill it, lock its store, or put
its data directory on a disk they fill.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandlot.domain.resources import DISK_MB_MIN
from sandlot.runtime.oci import state_root_for
from sandlot.testing import ServerProcess, ensure_base_template
from tests.e2e.test_cleanup_and_restart import doctor_check, host_traces

SEED = int(os.environ.get("SANDLOT_FAULT_SEED", random.randrange(1 << 30)))
"""Where the kills land; printed, and settable to replay a failure."""


def api(srv: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"X-API-Key": srv.api_key}, timeout=60)


def create(http: httpx.Client) -> str:
    made = http.post("/v1/sandboxes", json={})
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["id"])


def status(http: httpx.Client, sandbox_id: str) -> dict[str, Any]:
    got = http.get(f"/v1/sandboxes/{sandbox_id}")
    assert got.status_code == 200, got.text
    data: dict[str, Any] = got.json()["data"]
    return data


def wait_for_status(http: httpx.Client, sandbox_id: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (info := status(http, sandbox_id))["status"] != wanted:
        assert time.monotonic() < deadline, f"{sandbox_id} stayed {info['status']}"
        time.sleep(0.2)
    return info


def init_pid(srv: ServerProcess, sandbox_id: str) -> int:
    runc = ["runc", "--root", str(state_root_for(srv.data_dir)), "state", sandbox_id]
    state = json.loads(subprocess.run(runc, capture_output=True, check=True, text=True).stdout)
    return int(state["pid"])


def test_kill_9_agent_marks_the_sandbox_error_and_cleans_up(
    fresh_server: ServerProcess,
) -> None:
    with api(fresh_server) as http:
        victim, bystander = create(http), create(http)
        os.kill(init_pid(fresh_server, victim), signal.SIGKILL)
        info = wait_for_status(http, victim, "error")
        assert info["statusReason"], info
        assert host_traces(victim, fresh_server.data_dir) == []
        ran = http.post(f"/v1/sandboxes/{bystander}/exec", json={"command": "echo alive"})
        assert ran.json()["data"]["stdout"] == "alive\n"


def _snapshot_then_branch(http: httpx.Client, sandbox_id: str) -> None:
    http.post(f"/v1/sandboxes/{sandbox_id}/snapshots", json={"name": "s1"})
    http.post(f"/v1/sandboxes/{sandbox_id}/branch", json={"snapshot": "s1"})


OPERATIONS: dict[str, Callable[[httpx.Client, str], object]] = {
    "create": lambda http, _id: http.post("/v1/sandboxes", json={}),
    "exec": lambda http, sid: http.post(
        f"/v1/sandboxes/{sid}/exec", json={"command": "head -c 50000000 /dev/zero > /tmp/z"}
    ),
    "pause": lambda http, sid: http.post(f"/v1/sandboxes/{sid}/pause"),
    "snapshot": lambda http, sid: http.post(f"/v1/sandboxes/{sid}/snapshots", json={}),
    "branch": _snapshot_then_branch,
    "destroy": lambda http, sid: http.delete(f"/v1/sandboxes/{sid}"),
}


def _swallow(
    operation: Callable[[httpx.Client, str], object], srv: ServerProcess, sid: str
) -> Callable[[], None]:
    def run() -> None:
        try:
            with api(srv) as http:
                operation(http, sid)
        except httpx.TransportError:
            pass  # the server died under it, as intended

    return run


def collect_inherited_zombies(srv: ServerProcess) -> None:
    """Reap sandbox processes orphaned by the killed server that fell to this process.

    They come here only when the test process is itself a child subreaper (tests that
    run a runtime in-process make it one); on a host they go to PID 1, which reaps them.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        mine = fields[0] == "Z" and int(fields[1]) == os.getpid()
        if mine and srv.proc is not None and pid != srv.proc.pid:
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_kill_9_server_mid_operation_then_restart_heals(
    fresh_server: ServerProcess, operation: str
) -> None:
    srv = fresh_server
    delay = random.Random(f"{SEED}-{operation}").uniform(0.0, 0.6)
    print(f"SANDLOT_FAULT_SEED={SEED}: kill after {delay:.3f} s of {operation}")
    with api(srv) as http:
        keep, target = create(http), create(http)
    worker = threading.Thread(target=_swallow(OPERATIONS[operation], srv, target))
    worker.start()
    time.sleep(delay)
    srv.stop(signal.SIGKILL)
    worker.join(timeout=60)
    srv.start()
    checked = doctor_check(srv)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    collect_inherited_zombies(srv)
    with api(srv) as http:
        assert status(http, keep)["status"] == "running"
        ran = http.post(f"/v1/sandboxes/{keep}/exec", json={"command": "echo alive"})
        assert ran.json()["data"]["stdout"] == "alive\n"
        # Whatever the operation left is usable or gone, never half there.
        listed = http.get("/v1/sandboxes?limit=1000").json()["data"]
        for sbx in listed:
            assert sbx["status"] in ("running", "paused", "terminated", "error"), sbx
            if sbx["status"] in ("terminated", "error"):
                assert host_traces(sbx["id"], srv.data_dir) == [], sbx


class StoreWriteLock:
    """Another process holding the SQLite write lock: to the server the store is
    read-only until it lets go (what a stuck backup or a second writer does)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)

    def __enter__(self) -> StoreWriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def test_store_refusing_writes_gives_a_clear_error_then_recovers(
    fresh_server: ServerProcess,
) -> None:
    srv = fresh_server
    with api(srv) as http:
        running = create(http)
        with StoreWriteLock(srv.data_dir / "sandlot.db"):
            started = time.monotonic()
            refused = http.post("/v1/sandboxes", json={})
            assert time.monotonic() - started < 30, "the create hung on the locked store"
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "STORE_UNAVAILABLE" and error["retryable"], error
            assert "Traceback" not in refused.text
            # Reads still work: the store is locked for writing only.
            assert status(http, running)["status"] == "running"
        assert host_traces_of_unknown(srv, http) == []
        again = create(http)
        assert status(http, again)["status"] == "running"


def host_traces_of_unknown(srv: ServerProcess, http: httpx.Client) -> list[str]:
    """Sandbox directories on disk that the store does not know: a create cut short."""
    known = {s["id"] for s in http.get("/v1/sandboxes?limit=1000").json()["data"]}
    on_disk = {p.name for p in (srv.data_dir / "sandboxes").glob("*")}
    return sorted(on_disk - known)


@pytest.fixture
def small_disk_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose data directory is an ext4 filesystem of its own, just big enough
    for one sandbox's (sparse) smallest disk."""
    ensure_base_template()
    image, mountpoint = tmp_path / "disk.img", tmp_path / "data"
    subprocess.run(["truncate", "-s", f"{DISK_MB_MIN + 160}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    mountpoint.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    srv = ServerProcess(mountpoint, extra_env={"SANDLOT_WARM_POOL_SIZE": "0"})
    try:
        srv.start()
        yield srv
        srv.destroy_all()
        srv.stop()
    finally:
        if srv.proc is not None:
            srv.stop(signal.SIGKILL)
        subprocess.run(["umount", str(mountpoint)], check=False)


def test_full_data_disk_refuses_creates_cleanly(small_disk_server: ServerProcess) -> None:
    srv = small_disk_server
    filler = srv.data_dir / "filler"
    small = {"resources": {"diskMb": DISK_MB_MIN}}
    with api(srv) as http:
        first = http.post("/v1/sandboxes", json=small).json()["data"]["id"]
        ran = http.post(f"/v1/sandboxes/{first}/exec", json={"command": "echo x > /root/x"})
        assert ran.json()["data"]["exitCode"] == 0
        # Leave the store a few MiB for its rows and nothing for another sandbox.
        free_mb = shutil.disk_usage(srv.data_dir).free // (1024 * 1024)
        subprocess.run(["fallocate", "-l", f"{free_mb - 4}M", str(filler)], check=True)
        for _ in range(3):
            refused = http.post("/v1/sandboxes", json=small)
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "RESOURCE_EXHAUSTED" and "free" in error["message"], error
        assert host_traces_of_unknown(srv, http) == []
        for sbx in http.get("/v1/sandboxes?limit=1000").json()["data"]:
            assert sbx["id"] == first or host_traces(sbx["id"], srv.data_dir) == [], sbx
        assert status(http, first)["status"] == "running"
        filler.unlink()
        again = http.post("/v1/sandboxes", json=small)
        assert again.status_code == 201, again.text
    checked = doctor_check(srv)
    assert checked.returncode == 0, checked.stdout + checked.stderr
