"""Nothing leaks on destroy, and a server crash loses nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from sandlot import Sandbox, Sandlot
from sandlot.runtime.oci import run_root_for, state_root_for
from sandlot.testing import ServerProcess
from tests.e2e.network_traces import network_traces


def host_traces(sandbox_id: str, data_dir: Path) -> list[str]:
    """Every kind of thing the host creates for a sandbox, wherever it is still found."""
    traces = []
    if sandbox_id in Path("/proc/self/mountinfo").read_text():
        traces.append("mount")
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    if sandbox_id in loops:
        traces.append("loop device")
    traces += [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/sandlot/*/{sandbox_id}")]
    if (data_dir / "sandboxes" / sandbox_id).exists():
        traces.append("disk directory")
    if (run_root_for(data_dir) / sandbox_id).exists():
        traces.append("run directory")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"/{sandbox_id}" in (proc / "cgroup").read_text():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                # A zombie whose parent is the host's init (the sandbox outlived the
                # server that started it) is the host's to reap, not a leak.
                if state[0] != "Z" or state[1] != "1":
                    traces.append(f"process {proc.name} state {state[0]}")
        except OSError:
            pass  # exited while we looked
    runc = subprocess.run(
        ["runc", "--root", str(state_root_for(data_dir)), "list", "-q"],
        capture_output=True,
        text=True,
    ).stdout
    if sandbox_id in runc.split():
        traces.append("runc state")
    return traces + network_traces(sandbox_id, data_dir)


def test_destroy_leaves_nothing_behind(client: Sandlot, server: ServerProcess) -> None:
    sbx = Sandbox.create(client=client)
    sbx.commands.run("sleep 1000 > /dev/null 2>&1 & echo started")
    sbx.files.write("/workspace/x", "x")
    assert host_traces(sbx.id, server.data_dir)  # the probe sees a live sandbox
    sbx.kill()
    assert host_traces(sbx.id, server.data_dir) == []
    assert Sandbox.get(sbx.id, client=client).status == "terminated"


def test_kill_9_server_then_restart_adopts_running_sandboxes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
        keep = Sandbox.create(client=client)
        keep.files.write("/workspace/state.txt", "before crash")
        keep.commands.run("sleep 1000 > /dev/null 2>&1 &")
        doomed = Sandbox.create(client=client)
    srv.stop(signal.SIGKILL)
    # While the server is down, one sandbox dies behind its back.
    runc = ["runc", "--root", str(state_root_for(srv.data_dir))]
    subprocess.run([*runc, "kill", doomed.id, "KILL"], check=True)
    srv.start()
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
        survivor = Sandbox.get(keep.id, client=client)
        assert survivor.status == "running"
        assert survivor.files.read("/workspace/state.txt") == "before crash"
        assert "sleep" in survivor.commands.run("ps -eo comm").stdout
        lost = Sandbox.get(doomed.id, client=client)
        assert lost.status == "error" and lost.info.status_reason
        assert host_traces(doomed.id, srv.data_dir) == []
        survivor.kill()
        assert host_traces(keep.id, srv.data_dir) == []


def test_graceful_restart_keeps_sandboxes(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    headers = {"X-API-Key": srv.api_key}
    created = httpx.post(f"{srv.url}/v1/sandboxes", json={}, headers=headers, timeout=60).json()
    srv.stop(signal.SIGTERM)
    srv.start()
    r = httpx.post(
        f"{srv.url}/v1/sandboxes/{created['data']['id']}/exec",
        json={"command": "echo still here"},
        headers=headers,
        timeout=60,
    )
    assert r.json()["data"]["stdout"] == "still here\n"


def doctor_check(srv: ServerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandlot", "doctor", "--check", "--data-dir", str(srv.data_dir)],
        env=srv.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_check_finds_what_is_out_of_place(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
        kept = Sandbox.create(client=client)
        gone = Sandbox.create(client=client)
        Sandbox.create(client=client).kill()
    clean = doctor_check(srv)
    assert clean.returncode == 0 and "agree" in clean.stdout, clean.stdout + clean.stderr
    # A crash, and a sandbox lost while no server watches: the checker sees it...
    srv.stop(signal.SIGKILL)
    runc = ["runc", "--root", str(state_root_for(srv.data_dir))]
    subprocess.run([*runc, "delete", "--force", gone.id], check=True)
    broken = doctor_check(srv)
    assert broken.returncode == 1
    assert f"{gone.id}: the store says running" in broken.stdout
    assert kept.id not in broken.stdout
    # ...and the next start reconciles it away.
    srv.start()
    healed = doctor_check(srv)
    assert healed.returncode == 0, healed.stdout
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
        assert Sandbox.get(gone.id, client=client).status == "error"
        Sandbox.get(kept.id, client=client).kill()
