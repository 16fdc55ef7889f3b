"""No sandbox stalls the server.

A `files.replace` on a FIFO answers at once instead of blocking the agent. A sandbox
whose agent is a fake that answers the host's pause at random (or never) does not hold
up supervision: another sandbox still expires on time, the victim is destroyed at once,
and the server shuts down within its bound. The fake can only take the agent's place
under gVisor (under runc the host refuses its socket), so that half runs on a server
whose default runtime is runsc, and is skipped where runsc is not installed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import SandlotError
from sandlot.runtime.runsc import runsc_version
from sandlot.testing import ServerProcess, ensure_base_template

FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
SHUTDOWN_BOUND = 30.0
"""Seconds SIGTERM may take with a sandbox whose agent answers nothing sensible."""


def test_replace_on_a_fifo_answers_at_once(sandbox: Sandbox) -> None:
    sandbox.commands.run("mkfifo /tmp/pipe")
    started = time.monotonic()
    with pytest.raises(SandlotError) as refused:
        sandbox.files.replace("/tmp/pipe", old="a", new="b")
    assert time.monotonic() - started < 5
    assert refused.value.code in ("FILE_OPERATION_FAILED", "INVALID_CONFIG"), refused.value
    assert sandbox.commands.run("echo still-here").stdout == "still-here\n"


@pytest.fixture
def gvisor_server(tmp_path: Path) -> Iterator[ServerProcess]:
    if os.geteuid() != 0:
        pytest.skip("needs root: sandboxes use namespaces, mounts and cgroups")
    if runsc_version() is None:
        print("runsc is not installed (scripts/install-runsc installs it): no fake agent")
        pytest.skip("runsc is not installed")
    ensure_base_template()
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={"SANDLOT_RUNTIME": "runsc", "SANDLOT_WARM_POOL_SIZE": "0"},
    )
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    if srv.proc is None:  # shut down by the test: sandboxes outlive a server, by design
        srv.start()
    srv.destroy_all()
    srv.stop()


def test_a_sandbox_whose_agent_stalls_holds_up_no_one(gvisor_server: ServerProcess) -> None:
    with Sandlot(gvisor_server.url, gvisor_server.api_key) as client:
        victim = Sandbox.create(client=client, idle_timeout=2)
        victim.files.write("/tmp/fake_agent.py", FAKE_AGENT.read_bytes())
        victim.commands.run("python3 /tmp/fake_agent.py 120 7", background=True)
        time.sleep(1)
        expiring = Sandbox.create(client=client, timeout=6)
        created = time.monotonic()
        while expiring.refresh().status != "terminated":
            assert time.monotonic() - created < 15, "expiry waited on another sandbox"
            time.sleep(0.5)
        started = time.monotonic()
        victim.kill()
        assert time.monotonic() - started < 15, "destroying the victim waited on its agent"
        stalled = Sandbox.create(client=client)  # left for shutdown to deal with
        stalled.files.write("/tmp/fake_agent.py", FAKE_AGENT.read_bytes())
        stalled.commands.run("python3 /tmp/fake_agent.py 120 8", background=True)
        time.sleep(1)
    proc = gvisor_server.proc
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=SHUTDOWN_BOUND + 30)
    assert time.monotonic() - started < SHUTDOWN_BOUND
    gvisor_server.proc = None
