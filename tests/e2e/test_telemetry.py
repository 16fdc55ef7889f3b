"""OpenTelemetry export: a server with `otel_endpoint` set sends API request traces and
its events to a real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template

logs_service = pytest.importorskip(
    "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
    reason="OpenTelemetry is not installed (pip install '.[otel]')",
)
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


class Receiver(ThreadingHTTPServer):
    """Keeps every OTLP export request it is sent, by path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[tuple[str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def of(self, path: str) -> list[bytes]:
        return [body for p, body in list(self.received) if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def otel_server(tmp_path: Path, receiver: Receiver) -> Iterator[ServerProcess]:
    ensure_base_template()
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={"SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_OTEL_ENDPOINT": receiver.url},
    )
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


def _spans(receiver: Receiver) -> list[Any]:
    spans = []
    for body in receiver.of("/v1/traces"):
        request = trace_service.ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
    return spans


def _records(receiver: Receiver) -> list[tuple[dict[str, Any], str]]:
    """Each log record's attributes (as plain values) and body."""
    records = []
    for body in receiver.of("/v1/logs"):
        request = logs_service.ExportLogsServiceRequest.FromString(body)
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                for record in scope.log_records:
                    attributes = {
                        a.key: getattr(a.value, a.value.WhichOneof("value"))
                        for a in record.attributes
                    }
                    records.append((attributes, record.body.string_value))
    return records


def _eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "the receiver got nothing in time"
        time.sleep(0.2)
    return found


def test_traces_and_events_reach_an_otlp_receiver(
    otel_server: ServerProcess, receiver: Receiver
) -> None:
    with Sandlot(api_url=otel_server.url, api_key=otel_server.api_key) as client:
        sbx = Sandbox.create(client=client)
        sbx.commands.run("logger -t otel hello-collector")
        sbx.kill()

    def creation_traced() -> list[Any]:
        return [
            span
            for span in _spans(receiver)
            if any(
                a.key == "http.route" and a.value.string_value == "/v1/sandboxes"
                for a in span.attributes
            )
        ]

    (span, *_) = _eventually(creation_traced)
    assert span.end_time_unix_nano > span.start_time_unix_nano
    assert not any(s.name.endswith("/health") for s in _spans(receiver))

    def statuses() -> list[str]:
        return [
            a["sandlot.status"]
            for a, _ in _records(receiver)
            if a.get("sandlot.event.type") == "status" and a.get("sandlot.sandbox.id") == sbx.id
        ]

    _eventually(lambda: "terminated" in statuses())
    assert statuses() == ["creating", "running", "stopping", "terminated"]
    logs = [body for a, body in _records(receiver) if a.get("sandlot.event.type") == "log"]
    assert "hello-collector" in logs
