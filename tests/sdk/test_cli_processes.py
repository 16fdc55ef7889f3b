"""The process commands of the CLI (exec --stream, ps, attach, shell) against the
scripted WebSocket peer, with REST answered by a mock transport."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import signal
import struct
import sys
import termios
import time
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner
from websockets.sync.server import ServerConnection

from sandlot.cli.app import app
from sandlot.cli.output import process_status
from sandlot.cli.terminal import run_terminal
from sandlot.sdk import ProcessInfo, Sandlot
from sandlot.sdk._attach import eof_message, output_message, resize_message

from .conftest import Peer
from .test_processes import PROCESS, Api, attached, exited, sandbox

runner = CliRunner()


@pytest.fixture
def api(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> Api:
    """What the CLI's client asks over REST; its WebSockets go to `peer`."""
    answers = Api()

    def client(*_: Any) -> Sandlot:
        http = httpx.Client(transport=httpx.MockTransport(answers))
        return Sandlot(api_url=peer.url, api_key="k1", http_client=http)

    monkeypatch.setattr("sandlot.sdk.Sandlot", client)
    return answers


@pytest.mark.parametrize("command", ["ps", "shell", "attach"])
def test_help(command: str) -> None:
    result = runner.invoke(app, ["sandbox", command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert "--api-url" in result.output


def test_exec_offers_streaming() -> None:
    assert "--stream" in runner.invoke(app, ["sandbox", "exec", "--help"]).output
    result = runner.invoke(app, ["sandbox", "exec", "sbx-1", "--stream", "--json", "--", "ls"])
    assert result.exit_code == 2


def test_exec_stream_passes_each_stream_on_and_exits_with_the_code(peer: Peer, api: Api) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        peer.receive(ws)  # stdin closed at once
        ws.send(output_message("stdout", b"out\xff\n"))
        ws.send(output_message("stderr", b"err\n"))
        ws.send(exited(3))

    peer.script = script
    result = runner.invoke(
        app, ["sandbox", "exec", "sbx-7k2m9p4q1x", "--stream", "--timeout", "9", "--", "make", "x"]
    )
    assert result.exit_code == 3, result.output
    assert result.stdout_bytes == b"out\xff\n" and result.stderr == "err\n"
    assert peer.received == [eof_message()]
    assert api.bodies("/processes")[0]["timeout"] == 9


def test_exec_stream_timeout_exits_124(peer: Peer, api: Api) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"partial"))
        ws.send(exited(None, timed_out=True, signal="SIGKILL"))

    peer.script = script
    result = runner.invoke(app, ["sandbox", "exec", "sbx-7k2m9p4q1x", "--stream", "--", "sleep"])
    assert result.exit_code == 124
    assert result.stdout == "partial" and "SANDBOX_TIMEOUT" in result.stderr


def test_attach_replays_then_follows(peer: Peer, api: Api) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"before\n"))
        ws.send(output_message("stdout", b"after\n"))
        ws.send(exited(None, signal="SIGTERM"))

    peer.script = script
    result = runner.invoke(app, ["sandbox", "attach", "sbx-7k2m9p4q1x", "proc-1"])
    assert result.exit_code == 128 + 15
    assert result.stdout == "before\nafter\n"


def test_ps(peer: Peer, api: Api) -> None:
    result = runner.invoke(app, ["sandbox", "ps", "sbx-7k2m9p4q1x", "--all"])
    assert result.exit_code == 0, result.output
    assert "proc-1" in result.stdout and "make test" in result.stdout
    assert api.requests[-1].url.params["all"] == "true"
    listed = json.loads(runner.invoke(app, ["sandbox", "ps", "sbx-7k2m9p4q1x", "--json"]).stdout)
    assert listed[0]["id"] == "proc-1" and listed[0]["startedAt"].startswith("2025-01-02T03:04:05")


def test_process_status() -> None:
    def status(**fields: Any) -> str:
        return process_status(ProcessInfo.model_validate({**PROCESS, **fields}))

    assert status() == "running"
    assert status(status="exited", exitCode=0) == "exited 0"
    assert status(status="exited", signal="SIGTERM") == "killed SIGTERM"
    assert status(status="exited", signal="SIGKILL", timedOut=True) == "timed out"


def test_a_terminal_fed_from_a_pipe(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached({**PROCESS, "pty": True}))
        peer.receive(ws)  # the keys
        peer.receive(ws)  # end of input
        ws.send(output_message("pty", b"$ exit\r\n"))
        ws.send(exited(5))

    peer.script = script
    read_end, write_end = os.pipe()
    os.write(write_end, b"exit\n")
    os.close(write_end)
    out = io.BytesIO()
    with os.fdopen(read_end, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
        term = sandbox(peer, Api()).pty.connect("proc-1")
        result = run_terminal(term)
    assert result.exit_code == 5 and out.getvalue() == b"$ exit\r\n"
    assert peer.received == [b"exit\n", eof_message()]


@pytest.mark.skipif(not hasattr(signal, "SIGWINCH"), reason="needs POSIX terminals")
def test_a_local_terminal_is_raw_while_joined_and_restored_after(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)

    def script(ws: ServerConnection) -> None:
        ws.send(attached({**PROCESS, "pty": True}))
        # Typed in cooked mode, Ctrl-C would be eaten by the line discipline.
        while termios.tcgetattr(terminal)[3] & termios.ICANON:
            time.sleep(0.01)
        os.write(controller, b"ls\x03")
        peer.receive(ws)  # the keys
        os.kill(os.getpid(), signal.SIGWINCH)
        peer.receive(ws)  # the new size
        ws.send(exited(0))

    peer.script = script
    # The size comes from the terminal itself; COLUMNS/LINES would be a stale snapshot.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 22, 77, 0, 0))
    monkeypatch.setenv("COLUMNS", "99")
    monkeypatch.setenv("LINES", "11")
    with os.fdopen(terminal, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
        result = run_terminal(sandbox(peer, Api()).pty.connect("proc-1"))
        after = termios.tcgetattr(terminal)
    os.close(controller)
    assert result.exit_code == 0
    # Raw mode passed Ctrl-C through as a byte instead of raising it here.
    assert peer.received == [b"ls\x03", resize_message(77, 22)]
    assert after == before
