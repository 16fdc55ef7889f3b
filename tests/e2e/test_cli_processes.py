"""The process commands of the CLI: streamed exec, ps, attach, and a shell driven in tmux."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from sandlot import Sandbox
from tests.e2e.terminal import run_sandlot, screen, type_keys, wait_for_screen


def sandlot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandlot", *args], env=env, capture_output=True, timeout=120
    )


def test_exec_stream_passes_output_live_and_exit_code(
    api_env: dict[str, str], sandbox: Sandbox
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandlot",
            "sandbox",
            "exec",
            sandbox.id,
            "--stream",
            "--",
            "sh",
            "-c",
            "echo first; sleep 2; echo second >&2; exit 4",
        ],
        env=api_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    started = time.monotonic()
    assert proc.stdout.readline() == b"first\n"
    assert time.monotonic() - started < 1.8  # seen before the command finished
    assert proc.wait(timeout=60) == 4
    assert proc.stderr.read() == b"second\n"


def test_ps_and_attach(api_env: dict[str, str], sandbox: Sandbox) -> None:
    # Long enough to outlive two CLI start-ups on a busy machine.
    h = sandbox.commands.run("echo one; sleep 5; echo two; exit 6", background=True)
    h.close()
    listed = json.loads(sandlot(api_env, "sandbox", "ps", sandbox.id, "--json").stdout)
    assert h.id in {p["id"] for p in listed}
    table = sandlot(api_env, "sandbox", "ps", sandbox.id).stdout.decode()
    assert h.id in table
    attached = sandlot(api_env, "sandbox", "attach", sandbox.id, h.id)
    assert attached.stdout == b"one\ntwo\n" and attached.returncode == 6


def test_shell_driven_like_a_person(api_env: dict[str, str], sandbox: Sandbox, tmux: str) -> None:
    status_file = f"/tmp/sandlot-shell-status-{tmux}"
    run_sandlot(tmux, api_env, f"sandbox shell {sandbox.id}", f"; echo $? > {status_file}")
    wait_for_screen(tmux, f"root@{sandbox.id}")
    type_keys(tmux, "stty size; echo typed-$((6*7))")
    shown = wait_for_screen(tmux, "typed-42")
    assert "30 100" in shown  # the local terminal's size reached the sandbox
    subprocess.run(["tmux", "resize-window", "-t", tmux, "-x", "80", "-y", "24"], check=True)
    # The new size travels SIGWINCH -> CLI -> server -> agent; ask until it has arrived.
    deadline = time.monotonic() + 20
    while "24 80" not in screen(tmux):
        assert time.monotonic() < deadline, f"the resize never arrived:\n{screen(tmux)}"
        type_keys(tmux, "clear; stty size")
        time.sleep(0.5)
    type_keys(tmux, "exit 5")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with open(status_file) as f:
                status = f.read().strip()
            if status:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError(f"the shell did not exit:\n{screen(tmux)}")
    assert status == "5"
