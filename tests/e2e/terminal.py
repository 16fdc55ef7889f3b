"""Driving the CLI in a real terminal: tmux runs it, send-keys types, capture-pane reads."""

from __future__ import annotations

import subprocess
import sys
import time


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


def type_keys(session: str, line: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, line, "Enter"], check=True)


def run_sandlot(session: str, api_env: dict[str, str], args: str, then: str = "") -> None:
    """Type `sandlot ARGS` (pointed at the test server) into the terminal, then `then`."""
    exports = " ".join(f"{k}={v}" for k, v in api_env.items() if k.startswith(("SANDLOT_", "XDG_")))
    type_keys(session, f"env {exports} {sys.executable} -m sandlot {args}{then}")
