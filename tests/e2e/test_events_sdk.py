"""Events through the SDK and the CLI: callbacks, waiting, metrics, usage, watch."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import SandboxNotFoundError
from sandlot.testing import ServerProcess
from tests.e2e.terminal import run_sandlot, screen, wait_for_screen


def test_on_status_and_org_wide_exec_events(server: ServerProcess) -> None:
    with Sandlot(api_url=server.url, api_key=server.api_key) as client:
        commands: list[str] = []
        got_command = threading.Event()

        def on_exec(event: object) -> None:
            commands.append(event.data["command"])  # type: ignore[attr-defined]
            got_command.set()

        client.on("exec.completed", on_exec)
        sbx = Sandbox.create(client=client)
        statuses: list[str] = []
        done = threading.Event()

        def on_status(event: object) -> None:
            statuses.append(event.data["status"])  # type: ignore[attr-defined]
            if event.data["status"] == "terminated":  # type: ignore[attr-defined]
                done.set()

        sbx.on("status", on_status)
        sbx.commands.run("echo from-sdk")
        assert got_command.wait(10) and "echo from-sdk" in commands
        sbx.kill()
        assert done.wait(10)
        assert statuses[-2:] == ["stopping", "terminated"]
        client.off("exec.completed", on_exec)


def test_wait_for_metrics_and_usage(client: Sandlot) -> None:
    with Sandbox.create(client=client) as sbx:
        assert sbx.wait_for("running", timeout=10).status == "running"
        figures = sbx.metrics()
        assert figures.mem_limit_bytes == 512 * 2**20 and figures.pids >= 1
    usage = client.usage()
    assert any(r.id == sbx.id for r in usage.sandboxes)
    assert usage.total.runtime_seconds > 0


def test_events_of_an_unknown_sandbox_refused(client: Sandlot) -> None:
    with pytest.raises(SandboxNotFoundError):
        Sandbox.get("sbx-0000000000", client=client)


def test_events_cli_replays(api_env: dict[str, str], sandbox: Sandbox) -> None:
    sandbox.commands.run("echo cli-events")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandlot",
            "events",
            "--since",
            "0",
            "--sandbox",
            sandbox.id,
            "--type",
            "exec.completed",
            "--json",
        ],
        env=api_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "echo cli-events" in out.stdout


def test_watch_in_tmux_shows_figures(api_env: dict[str, str], sandbox: Sandbox, tmux: str) -> None:
    sandbox.commands.run("timeout 30 sh -c 'while :; do :; done'", background=True)
    run_sandlot(tmux, api_env, f"sandbox watch {sandbox.id}")
    shown = wait_for_screen(tmux, "running")
    deadline = time.monotonic() + 20
    while "%" not in shown or "CPU" not in shown.upper():
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)
        shown = screen(tmux)
    assert sandbox.id in shown
    sandbox.kill()
    wait_for_screen(tmux, "terminated")
