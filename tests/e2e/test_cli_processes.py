"""The process commands of the CLI: streamed exec, ps, attach, and a shell driven in tmux."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from sandlot import Sandbox


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
    h = sandbox.commands.run("echo one; sleep 1.5; echo two; exit 6", background=True)
    h.close()
    listed = json.loads(sandlot(api_env, "sandbox", "ps", sandbox.id, "--json").stdout)
    assert h.id in {p["id"] for p in listed}
    table = sandlot(api_env, "sandbox", "ps", sandbox.id).stdout.decode()
    assert h.id in table
    attached = sandlot(api_env, "sandbox", "attach", sandbox.id, h.id)
    assert attached.stdout == b"one\ntwo\n" and attached.returncode == 6


@pytest.fixture
def tmux() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/setup installs it)")
    name = f"sandlot-{uuid.uuid4().hex[:8]}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30"], check=True)
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], check=False)


def screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def wait_for_screen(session: str, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared on screen:\n{screen(session)}")


def test_shell_driven_like_a_person(api_env: dict[str, str], sandbox: Sandbox, tmux: str) -> None:
    exports = " ".join(f"{k}={v}" for k, v in api_env.items() if k.startswith(("SANDLOT_", "XDG_")))
    status_file = f"/tmp/sandlot-shell-status-{tmux}"
    subprocess.run(
        [
            "tmux",
            "send-keys",
            "-t",
            tmux,
            f"env {exports} {sys.executable} -m sandlot sandbox shell {sandbox.id}; "
            f"echo $? > {status_file}",
            "Enter",
        ],
        check=True,
    )
    wait_for_screen(tmux, f"root@{sandbox.id}")
    subprocess.run(
        ["tmux", "send-keys", "-t", tmux, "stty size; echo typed-$((6*7))", "Enter"], check=True
    )
    shown = wait_for_screen(tmux, "typed-42")
    assert "30 100" in shown  # the local terminal's size reached the sandbox
    subprocess.run(["tmux", "resize-window", "-t", tmux, "-x", "80", "-y", "24"], check=True)
    # The new size travels SIGWINCH -> CLI -> server -> agent; ask until it has arrived.
    deadline = time.monotonic() + 20
    while "24 80" not in screen(tmux):
        assert time.monotonic() < deadline, f"the resize never arrived:\n{screen(tmux)}"
        subprocess.run(["tmux", "send-keys", "-t", tmux, "clear; stty size", "Enter"], check=True)
        time.sleep(0.5)
    subprocess.run(["tmux", "send-keys", "-t", tmux, "exit 5", "Enter"], check=True)
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
