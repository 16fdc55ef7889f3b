"""Processes without a Sandlot server: the attach protocol, line splitting, and the
handles driven against a scripted WebSocket peer (REST answered by a mock transport)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.sync.server import ServerConnection

from sandlot.errors import (
    CommandTimeoutError,
    InternalError,
    InvalidConfigError,
    InvalidStateError,
    ProcessNotFoundError,
)
from sandlot.sdk import (
    AsyncSandbox,
    AsyncSandlot,
    OutputChunk,
    ProcessInfo,
    Sandbox,
    Sandlot,
)
from sandlot.sdk._attach import (
    Attached,
    Exited,
    Failed,
    attach_path,
    decode,
    eof_message,
    output_message,
    resize_message,
    signal_message,
    stdin_message,
    websocket_url,
)
from sandlot.sdk._output import LineSplitter, OutputTail

from .conftest import Peer
from .test_models import SANDBOX

PROCESS = {
    "id": "proc-1",
    "pid": 42,
    "command": "make test",
    "cwd": "/root",
    "pty": False,
    "startedAt": "2025-01-02T03:04:05Z",
    "status": "running",
    "exitCode": None,
    "signal": None,
    "durationMs": None,
    "timedOut": None,
}


def attached(process: dict[str, Any] = PROCESS, dropped: int = 0) -> str:
    return json.dumps({"type": "attached", "process": process, "droppedBytes": dropped})


def exited(code: int | None = 0, timed_out: bool = False, signal: str | None = None) -> str:
    return json.dumps(
        {
            "type": "exit",
            "exitCode": code,
            "signal": signal,
            "durationMs": 12.5,
            "timedOut": timed_out,
        }
    )


# --- the protocol ----------------------------------------------------------------


def test_output_messages_carry_the_stream_in_their_first_byte() -> None:
    assert output_message("stdout", b"hi") == b"\x01hi"
    assert decode(b"\x01hi") == OutputChunk("stdout", b"hi")
    assert decode(b"\x02\xff\x00") == OutputChunk("stderr", b"\xff\x00")
    assert decode(b"\x03") == OutputChunk("pty", b"")
    assert decode(b"\x09what") is None
    assert decode(b"") is None


def test_control_messages_from_the_server() -> None:
    greeting = decode(attached(dropped=7))
    assert isinstance(greeting, Attached)
    assert greeting.dropped_bytes == 7 and greeting.process.id == "proc-1"
    assert greeting.process.pid == 42 and greeting.process.status == "running"
    assert decode(exited(None, signal="SIGKILL")) == Exited(None, "SIGKILL", 12.5, False)
    failure = decode(
        json.dumps(
            {
                "type": "error",
                "error": {"code": "PROCESS_NOT_FOUND", "message": "gone", "retryable": False},
            }
        )
    )
    assert isinstance(failure, Failed) and isinstance(failure.error, ProcessNotFoundError)
    assert decode(json.dumps({"type": "later-feature"})) is None
    broken = decode('{"type": "attached"}')
    assert isinstance(broken, Failed) and isinstance(broken.error, InternalError)


def test_messages_to_the_server() -> None:
    assert stdin_message("é\n") == "é\n".encode()
    assert stdin_message(b"\x00\xff") == b"\x00\xff"
    assert json.loads(eof_message()) == {"type": "eof"}
    assert json.loads(signal_message("SIGINT")) == {"type": "signal", "signal": "SIGINT"}
    assert json.loads(resize_message(80, 24)) == {"type": "resize", "cols": 80, "rows": 24}
    with pytest.raises(InvalidConfigError):
        resize_message(0, 24)


def test_websocket_urls() -> None:
    path = attach_path("sbx-1", "proc-1")
    assert path == "/v1/sandboxes/sbx-1/processes/proc-1/attach"
    assert websocket_url("http://h:7766", path) == "ws://h:7766" + path
    assert websocket_url("https://h/sandlot/", path) == "wss://h/sandlot" + path
    assert attach_path("a/b", "p?q") == "/v1/sandboxes/a%2Fb/processes/p%3Fq/attach"
    with pytest.raises(InvalidConfigError):
        websocket_url("ftp://h", path)


# --- output bookkeeping ------------------------------------------------------------


def test_lines_are_joined_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o") == []
    assert splitter.feed(b"\r\nthree\n\nfour") == ["two", "three", ""]
    assert splitter.flush() == ["four"]
    assert splitter.flush() == []


def test_a_character_split_across_chunks_is_kept_whole() -> None:
    splitter = LineSplitter()
    data = "héllo €\n".encode()
    lines = [line for byte in data for line in splitter.feed(bytes([byte]))]
    assert lines == ["héllo €"]
    assert splitter.feed(b"\xff\n") == ["\ufffd"]


def test_the_tail_keeps_the_last_bytes() -> None:
    tail = OutputTail(limit=5)
    tail.add(b"abc")
    assert not tail.truncated
    tail.add(b"defg")
    assert tail.getvalue() == b"cdefg" and tail.truncated


# --- handles against a scripted peer ------------------------------------------------


@dataclass
class Api:
    """REST answers for a sandbox and its processes; records what was asked."""

    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/sandboxes/sbx-7k2m9p4q1x":
            return httpx.Response(200, json={"data": SANDBOX})
        if path.endswith("/processes") and request.method == "POST":
            return httpx.Response(201, json={"data": PROCESS})
        if path.endswith("/processes"):
            return httpx.Response(200, json={"data": [PROCESS]})
        return httpx.Response(200, json={"data": PROCESS})

    def bodies(self, suffix: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if r.url.path.endswith(suffix)]


def sandbox(peer: Peer, api: Api) -> Sandbox:
    http = httpx.Client(transport=httpx.MockTransport(api))
    return Sandlot(api_url=peer.url, api_key="k1", http_client=http).sandboxes.get("sbx-7k2m9p4q1x")


def test_background_run_streams_replay_then_live_and_takes_stdin(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached(dropped=3))
        ws.send(output_message("stdout", b"replayed\n"))
        echo = peer.receive(ws)
        ws.send(output_message("stdout", b"got " + bytes(echo)))
        peer.receive(ws)  # eof
        ws.send(output_message("stderr", b"\xffbye\n"))
        ws.send(exited(3))

    peer.script = script
    api = Api()
    h = sandbox(peer, api).commands.run(
        "make test", background=True, cwd="/app", env={"A": "1"}, max_run_after_disconnect=30
    )
    assert (h.id, h.pid, h.dropped_bytes, h.exit_code) == ("proc-1", 42, 3, None)
    chunks = h.stream()
    assert next(chunks) == OutputChunk("stdout", b"replayed\n")
    h.send_stdin("ping\n")
    assert next(chunks).text == "got ping\n"
    h.close_stdin()
    assert next(chunks) == OutputChunk("stderr", b"\xffbye\n")
    assert list(chunks) == []
    result = h.wait()
    assert result.exit_code == 3 and result.stderr == "\ufffdbye\n"
    assert result.stdout == "replayed\ngot ping\n"
    assert result.truncated  # the scrollback had lost bytes
    assert peer.received == [b"ping\n", eof_message()]
    assert peer.paths == ["/v1/sandboxes/sbx-7k2m9p4q1x/processes/proc-1/attach"]
    assert peer.keys == ["k1"]
    assert api.bodies("/processes") == [
        {
            "command": "make test",
            "cwd": "/app",
            "env": {"A": "1"},
            "timeout": None,
            "pty": None,
            "maxRunAfterDisconnect": 30,
        }
    ]
    with pytest.raises(InvalidStateError):
        h.send_stdin("too late")


def test_callbacks_get_whole_lines_while_run_waits(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        for piece in (b"a", b"b\nc", b"d\n", b"tail"):
            ws.send(output_message("stdout", piece))
        ws.send(output_message("stderr", b"warn\n"))
        ws.send(exited(0))

    peer.script = script
    api = Api()
    out: list[str] = []
    err: list[str] = []
    result = sandbox(peer, api).commands.run(
        ["make", "test"], on_stdout=out.append, on_stderr=err.append, timeout=5
    )
    assert out == ["ab", "cd", "tail"] and err == ["warn"]
    assert result.stdout == "ab\ncd\ntail" and result.exit_code == 0
    assert api.bodies("/processes")[0]["timeout"] == 5
    assert api.bodies("/processes")[0]["command"] == ["make", "test"]


def test_a_server_side_timeout_raises_with_the_output(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"partial\n"))
        ws.send(exited(None, timed_out=True, signal="SIGKILL"))

    peer.script = script
    with pytest.raises(CommandTimeoutError) as caught:
        sandbox(peer, Api()).commands.run("sleep 99", timeout=1, on_stdout=lambda line: None)
    assert caught.value.stdout == "partial\n" and caught.value.details["killed"] is True


def test_waiting_past_a_deadline_leaves_the_process_running(peer: Peer) -> None:
    release = threading.Event()

    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"working\n"))
        release.wait(5)
        ws.send(exited(0))

    peer.script = script
    api = Api()
    h = sandbox(peer, api).commands.run("sleep 99", background=True)
    with pytest.raises(CommandTimeoutError) as caught:
        h.wait(timeout=0.2)
    assert caught.value.stdout == "working\n" and caught.value.details["killed"] is False
    assert not api.bodies("/signal")
    release.set()
    assert h.wait(timeout=5).exit_code == 0


def test_kill_and_list_go_through_rest(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.recv(timeout=5)  # until the client leaves

    peer.script = script
    api = Api()
    sbx = sandbox(peer, api)
    with sbx.commands.run("sleep 99", background=True) as h:
        h.kill()
        h.kill(signal="SIGTERM")
    assert api.bodies("/signal") == [{"signal": "SIGKILL"}, {"signal": "SIGTERM"}]
    listed = sbx.commands.list(include_exited=True)
    assert listed == [ProcessInfo.model_validate(PROCESS)]
    assert api.requests[-1].url.params["all"] == "true"


def test_attaching_to_an_unknown_process_raises_its_error(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        error = {"code": "PROCESS_NOT_FOUND", "message": "no proc-9", "retryable": False}
        ws.send(json.dumps({"type": "error", "error": error}))
        ws.close(1011)

    peer.script = script
    with pytest.raises(ProcessNotFoundError):
        sandbox(peer, Api()).commands.connect("proc-9")


def test_a_connection_lost_before_the_exit_is_reported(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.close(1011)

    peer.script = script
    h = sandbox(peer, Api()).commands.connect("proc-1")
    with pytest.raises(InternalError, match="re-attach"):
        h.wait()


def test_a_terminal_sends_keys_and_sizes(peer: Peer) -> None:
    terminal = {**PROCESS, "pty": True, "command": "/bin/bash -l"}

    def script(ws: ServerConnection) -> None:
        ws.send(attached(terminal))
        peer.receive(ws)
        peer.receive(ws)
        ws.send(output_message("pty", b"$ ls\r\n"))
        ws.send(exited(0))

    peer.script = script
    api = Api()
    seen: list[bytes] = []
    t = sandbox(peer, api).pty.create(cols=100, rows=30, on_output=seen.append)
    t.send("ls\n")
    t.resize(cols=80, rows=24)
    result = t.wait()
    assert seen == [b"$ ls\r\n"] and result.stdout == "$ ls\r\n"
    assert peer.received == [b"ls\n", resize_message(80, 24)]
    body = api.bodies("/processes")[0]
    assert body["pty"] == {"cols": 100, "rows": 30} and body["command"] is None


def test_user_is_sent_when_given_and_left_out_otherwise(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(exited(0))

    peer.script = script
    api = Api()
    sbx = sandbox(peer, api)
    sbx.commands.run("id", background=True, user="alice").wait()
    sbx.commands.run("id", user="1000:1000", on_stdout=print)
    sbx.pty.create(user="alice:devs").wait()
    sbx.commands.run("id", background=True).wait()
    users = [body.get("user", "left out") for body in api.bodies("/processes")]
    assert users == ["alice", "1000:1000", "alice:devs", "left out"]


async def test_the_async_twin(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"one\n"))
        peer.receive(ws)
        ws.send(output_message("stdout", b"two\n"))
        ws.send(exited(1))

    peer.script = script
    api = Api()
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    async with AsyncSandlot(api_url=peer.url, api_key="k1", http_client=http) as client:
        sbx: AsyncSandbox = await client.sandboxes.get("sbx-7k2m9p4q1x")
        lines: list[str] = []

        async def on_line(line: str) -> None:
            lines.append(line)

        h = await sbx.commands.run("x", background=True, on_stdout=on_line)
        chunks = [chunk.data async for chunk in _first(h.stream(), 1)]
        await h.send_stdin(b"go")
        result = await h.wait(timeout=5)
    assert chunks == [b"one\n"] and lines == ["one", "two"]
    assert (result.exit_code, result.stdout) == (1, "one\ntwo\n")
    assert peer.received == [b"go"]


async def _first(chunks: Any, count: int) -> Any:
    async for chunk in chunks:
        yield chunk
        count -= 1
        if count == 0:
            return


async def test_the_async_twin_of_a_terminal_and_of_a_timeout(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(attached({**PROCESS, "pty": True}))
        peer.receive(ws)
        ws.send(output_message("pty", b"$ "))
        ws.send(exited(None, timed_out=True, signal="SIGKILL"))

    peer.script = script
    http = httpx.AsyncClient(transport=httpx.MockTransport(Api()))
    async with AsyncSandlot(api_url=peer.url, api_key="k1", http_client=http) as client:
        sbx = await client.sandboxes.get("sbx-7k2m9p4q1x")
        seen: list[bytes] = []
        t = await sbx.pty.create(on_output=seen.append, timeout=1)
        await t.resize(80, 24)
        with pytest.raises(CommandTimeoutError) as caught:
            await t.wait()
    assert seen == [b"$ "] and caught.value.stdout == "$ "
    assert peer.received == [resize_message(80, 24)]


def test_pump_reads_what_arrives_in_time_and_close_detaches(peer: Peer) -> None:
    release = threading.Event()

    def script(ws: ServerConnection) -> None:
        ws.send(attached())
        ws.send(output_message("stdout", b"early"))
        release.wait(5)
        ws.send(output_message("stdout", b"late"))
        ws.send(exited(0))
        release.clear()
        release.wait(5)

    peer.script = script
    seen: list[str] = []
    h = sandbox(peer, Api()).commands.run("x", background=True, on_stdout=seen.append)
    assert h.pump(0.2) == [OutputChunk("stdout", b"early")]
    assert h.pump(0.05) == []
    release.set()
    assert h.pump(5) == [OutputChunk("stdout", b"late")]
    assert h.exit_code == 0 and seen == ["earlylate"]
    h.close()
    release.set()
