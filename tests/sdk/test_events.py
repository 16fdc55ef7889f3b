"""Events, metrics and usage without a Sandlot server: the models, the stream's
bookkeeping, and streams, listeners and `wait_for` against a scripted WebSocket peer
(REST answered by a mock transport)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection, serve

from sandlot.errors import InternalError, InvalidStateError, SandboxNotFoundError
from sandlot.sdk import AsyncSandlot, Event, Metrics, Sandlot, Usage
from sandlot.sdk._events import EventCursor, events_path, normalize_types, reconnect_delay

from .conftest import Peer
from .test_models import SANDBOX

SBX = "sbx-7k2m9p4q1x"
METRICS = {
    "cpuPercent": 12.5,
    "memPercent": 40.0,
    "memBytes": 214_748_364,
    "memLimitBytes": 536_870_912,
    "diskBytes": 1024,
    "diskLimitBytes": 10_737_418_240,
    "netRxBytesPerSec": 300.5,
    "netTxBytesPerSec": 20.0,
    "pids": 7,
}


def event(
    event_id: int | None, kind: str, data: dict[str, Any], sandbox_id: str | None = SBX
) -> str:
    return json.dumps(
        {
            "id": event_id,
            "type": kind,
            "sandboxId": sandbox_id,
            "at": "2025-01-02T03:04:05Z",
            "data": data,
        }
    )


def status(event_id: int, value: str, reason: str = "") -> str:
    return event(event_id, "status", {"status": value, "reason": reason})


def metrics(cpu: float = 12.5) -> str:
    return event(None, "metrics", {**METRICS, "cpuPercent": cpu})


def hold_open(ws: ServerConnection) -> None:
    ws.recv(timeout=5)


def query(path: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(path).query)


# --- models ---------------------------------------------------------------------


def test_an_event_parses_and_knows_its_kind() -> None:
    ev = Event.model_validate_json(status(7, "running", "resumed"))
    assert (ev.id, ev.type, ev.sandbox_id, ev.status) == (7, "status", SBX, "running")
    assert ev.at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert not ev.is_final and ev.metrics is None
    assert Event.model_validate_json(status(8, "terminated")).is_final
    odd = Event.model_validate_json(status(9, "hibernating"))  # a status from a newer server
    assert odd.status is None and not odd.is_final


def test_a_metrics_event_carries_metrics() -> None:
    ev = Event.model_validate_json(metrics())
    assert ev.id is None and ev.status is None
    figures = ev.metrics
    assert isinstance(figures, Metrics)
    assert figures.cpu_percent == 12.5 and figures.mem_limit_bytes == 536_870_912
    assert figures.net_rx_bytes_per_sec == 300.5 and figures.pids == 7
    assert figures.at == ev.at
    assert figures.to_api()["netTxBytesPerSec"] == 20.0


def test_usage_reads_from_and_to() -> None:
    usage = Usage.model_validate(
        {
            "from": "2025-01-01T00:00:00Z",
            "to": "2025-01-02T00:00:00Z",
            "sandboxes": [
                {"id": SBX, "vcpuSeconds": 10, "memoryMbSeconds": 5120, "runtimeSeconds": 10}
            ],
            "total": {"vcpuSeconds": 10, "memoryMbSeconds": 5120, "runtimeSeconds": 10},
        }
    )
    assert usage.start.day == 1 and usage.end.day == 2
    assert usage.sandboxes[0].memory_mb_seconds == 5120 and usage.total.vcpu_seconds == 10


# --- the cursor ------------------------------------------------------------------


def test_the_cursor_resumes_after_the_last_id_seen() -> None:
    cursor = EventCursor(SBX, types=["status", "metrics"])
    assert cursor.path() == f"/v1/sandboxes/{SBX}/events?types=metrics,status"
    assert cursor.accept(status(3, "running")) is not None
    assert cursor.accept(metrics()) is not None
    assert cursor.path() == f"/v1/sandboxes/{SBX}/events?since=3&types=metrics,status"
    # A replay overlapping what was already seen is not passed on twice.
    assert cursor.accept(status(3, "running")) is None
    assert cursor.accept(event(4, "file.created", {"path": "/a", "size": 1})) is None
    assert cursor.last_id == 4
    assert not cursor.finished
    assert cursor.accept(status(5, "terminated")) is not None
    assert cursor.finished


def test_cursor_scopes_and_types() -> None:
    assert events_path(None) == "/v1/events"
    assert EventCursor(None, since=10).path() == "/v1/events?since=10"
    assert normalize_types("*") is None and normalize_types([]) is None
    assert normalize_types("status") == frozenset({"status"})
    org = EventCursor(None)
    org.accept(status(1, "terminated"))
    assert not org.finished  # one sandbox ending does not end the organisation's stream
    with pytest.raises(InternalError):
        org.accept("not json")
    assert [reconnect_delay(n) for n in (0, 1, 99)] == [0.0, 0.25, 5.0]


# --- streams against a peer ---------------------------------------------------------


def rest(sandbox_status: str = "running") -> httpx.MockTransport:
    """The REST side: the sandbox in `sandbox_status`, its metrics, the usage."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == f"/v1/sandboxes/{SBX}":
            return httpx.Response(200, json={"data": {**SANDBOX, "status": sandbox_status}})
        if path == f"/v1/sandboxes/{SBX}/metrics":
            return httpx.Response(200, json={"data": {**METRICS, "at": "2025-01-02T03:04:05Z"}})
        assert path == "/v1/usage"
        return httpx.Response(
            200,
            json={
                "data": {
                    "from": request.url.params.get("from", "2025-01-01T00:00:00Z"),
                    "to": request.url.params.get("to", "2025-01-02T00:00:00Z"),
                    "sandboxes": [],
                    "total": {"vcpuSeconds": 0, "memoryMbSeconds": 0, "runtimeSeconds": 0},
                }
            },
        )

    return httpx.MockTransport(handler)


def client(peer: Peer, sandbox_status: str = "running") -> Sandlot:
    http = httpx.Client(transport=rest(sandbox_status))
    return Sandlot(api_url=peer.url, api_key="k1", http_client=http)


def test_a_dropped_stream_reconnects_from_the_last_id(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        if len(peer.paths) == 1:
            ws.send(status(1, "running"))
            ws.send(metrics())
            ws.send(event(2, "exec.completed", {"command": "ls", "exitCode": 0}))
            ws.close(1011)  # the server went wrong: reconnect
        else:
            ws.send(event(2, "exec.completed", {"command": "ls", "exitCode": 0}))  # overlap
            ws.send(event(3, "file.created", {"path": "/a", "size": 3}))
            ws.send(status(4, "terminated"))
            ws.recv(timeout=5)  # the client closes once the sandbox has ended

    peer.script = script
    with client(peer) as c:
        sbx = c.sandboxes.get(SBX)
        with sbx.events(since=0) as stream:
            seen = [(ev.id, ev.type) for ev in stream]
    assert seen == [
        (1, "status"),
        (None, "metrics"),
        (2, "exec.completed"),
        (3, "file.created"),
        (4, "status"),
    ]
    assert [query(p).get("since") for p in peer.paths] == [["0"], ["2"]]
    assert peer.keys == ["k1", "k1"]


def test_a_normal_close_ends_the_stream_and_idle_timeout_too(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(event(1, "exec.completed", {}, sandbox_id="sbx-other"))
        if "types" in query(ws.request.path if ws.request else ""):
            ws.recv(timeout=5)  # stays open: only the idle timeout ends it

    peer.script = script
    with client(peer) as c:
        assert [ev.id for ev in c.events(since=0)] == [1]
        stream = c.events(types=["exec.completed"], idle_timeout=0.2)
        assert [ev.sandbox_id for ev in stream] == ["sbx-other"]
        assert stream.finished
    assert peer.paths == ["/v1/events?since=0", "/v1/events?types=exec.completed"]


def test_a_refused_stream_raises_the_servers_error() -> None:
    body = json.dumps({"error": {"code": "SANDBOX_NOT_FOUND", "message": "no such sandbox"}})

    def refuse(ws: ServerConnection, request: Request) -> Response:
        return ws.respond(404, body)

    with serve(lambda ws: None, "127.0.0.1", 0, process_request=refuse) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        http = httpx.Client(transport=rest())
        with Sandlot(api_url=url, api_key="k1", http_client=http) as c:
            sbx = c.sandboxes.get(SBX)
            with pytest.raises(SandboxNotFoundError):
                sbx.events()
            with pytest.raises(SandboxNotFoundError):
                sbx.on("status", print)
            assert not sbx._listener.running
        server.shutdown()


def test_metrics_and_usage_over_rest(peer: Peer) -> None:
    seen: list[httpx.Request] = []
    transport = rest()

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return transport.handle_request(request)

    http = httpx.Client(transport=httpx.MockTransport(recording))
    with Sandlot(api_url=peer.url, api_key="k1", http_client=http) as c:
        figures = c.sandboxes.get(SBX).metrics()
        assert figures.mem_bytes == 214_748_364 and figures.pids == 7
        start = datetime(2025, 3, 1, tzinfo=UTC)
        usage = c.usage(start, datetime(2025, 3, 2, 12, tzinfo=UTC))
        assert usage.start == start and usage.total.runtime_seconds == 0
        c.usage()
    assert seen[-2].url.params["from"] == "2025-03-01T00:00:00Z"
    assert seen[-2].url.params["to"] == "2025-03-02T12:00:00Z"
    assert "from" not in seen[-1].url.params


# --- listeners ---------------------------------------------------------------------


def test_callbacks_run_on_the_listener_thread_and_survive_errors(
    peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    go = threading.Event()

    def script(ws: ServerConnection) -> None:
        if len(peer.paths) == 1:
            go.wait(5)
            ws.send(status(1, "running"))
            ws.send(metrics(50.0))
            ws.close(1001)
        else:
            ws.send(event(2, "exec.completed", {"command": "ls", "exitCode": 0}))
            ws.send(status(3, "terminated"))

    peer.script = script
    got: list[tuple[str, str, int | None]] = []
    threads: set[str] = set()
    done = threading.Event()

    def on_status(ev: Event) -> None:
        threads.add(threading.current_thread().name)
        got.append(("status", ev.type, ev.id))
        if ev.is_final:
            done.set()

    def on_any(ev: Event) -> None:
        got.append(("*", ev.type, ev.id))

    def broken(ev: Event) -> None:
        raise RuntimeError("a bug in the user's callback")

    with caplog.at_level(logging.ERROR, logger="sandlot.events"), client(peer) as c:
        sbx = c.sandboxes.get(SBX)
        sbx.on("status", broken)
        sbx.on("status", on_status)
        sbx.on("*", on_any)
        go.set()
        assert done.wait(5)
        sbx._listener._thread.join(5)  # type: ignore[union-attr]
        assert not sbx._listener.running  # the sandbox ended, so did its listener
    assert got == [
        ("status", "status", 1),
        ("*", "status", 1),
        ("*", "metrics", None),
        ("*", "exec.completed", 2),
        ("status", "status", 3),
        ("*", "status", 3),
    ]
    assert threads == {f"sandlot-events-{SBX}"}
    assert len(peer.paths) == 2  # one socket for every type, reopened once
    assert query(peer.paths[1])["since"] == ["1"]
    assert "a bug in the user's callback" in caplog.text


def test_off_and_close_stop_the_listener(peer: Peer) -> None:
    closed = threading.Event()

    def script(ws: ServerConnection) -> None:
        # However the client goes (even before the first event is sent), say so.
        try:
            ws.send(event(1, "exec.completed", {}))
            ws.recv(timeout=5)
        except Exception:
            pass
        finally:
            closed.set()

    peer.script = script
    got: list[int | None] = []
    with client(peer) as c:
        sbx = c.sandboxes.get(SBX)
        sbx.on("exec.completed", lambda ev: got.append(ev.id))
        c.on("*", lambda ev: got.append(ev.id))
        sbx.off("exec.completed")
        assert closed.wait(5) and not sbx._listener.running
        assert c._listener.running
        closed.clear()
    assert closed.wait(5) and not c._listener.running  # closing the client stopped it
    assert set(peer.paths) == {f"/v1/sandboxes/{SBX}/events", "/v1/events"}


# --- wait_for ----------------------------------------------------------------------


def test_wait_for_follows_status_events(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(status(1, "creating"))
        ws.send(status(2, "running"))
        ws.recv(timeout=5)

    peer.script = script
    with client(peer, "creating") as c:
        sbx = c.sandboxes.get(SBX)
        info = sbx.wait_for("running", timeout=5)
    # The REST side still says "creating": the answer is what was fetched after the event.
    assert info.status == "creating"
    assert query(peer.paths[0])["types"] == ["status"]


def test_wait_for_refuses_a_sandbox_that_ended(peer: Peer) -> None:
    peer.script = hold_open
    with client(peer, "terminated") as c:
        sbx = c.sandboxes.get(SBX)
        with pytest.raises(InvalidStateError, match="never be running"):
            sbx.wait_for("running", timeout=5)
        assert sbx.wait_for("terminated").status == "terminated"


def test_wait_for_times_out(peer: Peer) -> None:
    peer.script = hold_open
    with (
        client(peer, "paused") as c,
        pytest.raises(TimeoutError, match=r"did not become running within 0\.3 s"),
    ):
        c.sandboxes.get(SBX).wait_for("running", timeout=0.3)


# --- the async twin -----------------------------------------------------------------


async def test_the_async_twin(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        if len(peer.paths) == 1:
            ws.send(status(1, "running"))
            ws.close(1011)
        elif len(peer.paths) == 2:
            ws.send(metrics())
            ws.send(status(2, "terminated"))
            ws.recv(timeout=5)
        else:
            ws.send(status(1, "creating"))
            ws.send(status(2, "running"))
            ws.recv(timeout=5)

    peer.script = script
    http = httpx.AsyncClient(transport=rest("creating"))
    got: list[str] = []
    done = asyncio.Event()

    async def on_any(ev: Event) -> None:
        got.append(ev.type)
        if ev.is_final:
            done.set()

    async with AsyncSandlot(api_url=peer.url, api_key="k1", http_client=http) as c:
        sbx = await c.sandboxes.get(SBX)
        await sbx.on("*", on_any)
        await asyncio.wait_for(done.wait(), 5)
        assert got == ["status", "metrics", "status"]
        assert query(peer.paths[1])["since"] == ["1"]
        await asyncio.sleep(0.05)
        assert not sbx._listener.running
        assert (await sbx.wait_for("running", timeout=5)).id == SBX
        assert (await sbx.metrics()).cpu_percent == 12.5
        assert (await c.usage()).sandboxes == []
