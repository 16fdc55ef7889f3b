"""Events, metrics, usage and Prometheus through the real server."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from sandlot import Sandbox, Sandlot
from sandlot.store import keys
from sandlot.store.database import Database
from sandlot.testing import ServerProcess
from tests.e2e.nethosts import outside_hosts


def ws_url(server: ServerProcess, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def read_quiet(server: ServerProcess, path: str, quiet: float = 0.7) -> list[dict[str, Any]]:
    """Every event a WebSocket sends until it has been quiet for `quiet` seconds."""
    got = []
    with connect(ws_url(server, path), additional_headers={"X-API-Key": server.api_key}) as ws:
        while True:
            try:
                got.append(json.loads(ws.recv(timeout=quiet)))
            except TimeoutError:
                return got


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key}, timeout=60) as c:
        yield c


def test_status_events_in_order_with_durations(client: Sandlot, server: ServerProcess) -> None:
    sbx = Sandbox.create(client=client)
    sbx.files.write("/workspace/x.txt", "x")
    sbx.commands.run("exit 3")
    sbx.pause()
    time.sleep(0.3)
    sbx.resume()
    sbx.kill()
    events = read_quiet(server, f"/v1/sandboxes/{sbx.id}/events?since=0")
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["creating", "running", "paused", "running", "stopping", "terminated"]
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and None not in ids
    changes = [e["data"] for e in events if e["type"] == "status"]
    assert changes[2]["pauseMode"] in ("checkpoint", "freeze")
    assert (changes[3]["reason"], changes[3]["pausedDurationMs"] >= 300) == ("resumed", True)
    assert changes[-1]["runtimeDurationMs"] > 0
    assert changes[-1]["pausedDurationMs"] >= 300
    by_type = {e["type"]: e for e in events}
    assert by_type["exec.completed"]["data"]["exitCode"] == 3
    assert by_type["file.created"]["data"] == {"path": "/workspace/x.txt", "size": 1}
    cost = by_type["cost.runtime"]["data"]
    assert cost["vcpuSeconds"] == pytest.approx(cost["runtimeSeconds"], rel=0.01)


def test_reconnect_with_since_receives_what_was_missed(
    client: Sandlot, server: ServerProcess
) -> None:
    with Sandbox.create(client=client) as sbx:
        path = f"/v1/sandboxes/{sbx.id}/events?types=exec.completed"
        headers = {"X-API-Key": server.api_key}
        with connect(ws_url(server, path), additional_headers=headers) as ws:
            sbx.commands.run("echo one")
            first = json.loads(ws.recv(timeout=10))
        assert first["data"]["command"] == "echo one"
        sbx.commands.run("echo two")  # while nobody listens
        sbx.commands.run("echo three")
        missed = read_quiet(server, f"{path}&since={first['id']}")
        assert [e["data"]["command"] for e in missed] == ["echo two", "echo three"]


def test_server_sent_events(client: Sandlot, server: ServerProcess) -> None:
    with Sandbox.create(client=client) as sbx:
        sbx.commands.run("true")
        headers = {"X-API-Key": server.api_key, "Accept": "text/event-stream"}
        url = f"{server.url}/v1/sandboxes/{sbx.id}/events?since=0&types=status"
        seen: list[dict[str, Any]] = []
        with httpx.stream("GET", url, headers=headers, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            for line in r.iter_lines():
                if line.startswith(("id:", "event:", "data:")):
                    key, _, value = line.partition(":")
                    block[key] = value.strip()
                elif not line and block:
                    seen.append(block)
                    block = {}
                    if len(seen) == 2:
                        break
        assert [b["event"] for b in seen] == ["status", "status"]
        assert [json.loads(b["data"])["data"]["status"] for b in seen] == ["creating", "running"]
        assert int(seen[0]["id"]) < int(seen[1]["id"])


def event_subscribers(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": server.api_key}).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families["sandlot_event_subscribers"].samples[0].value


def test_clients_hanging_up_mid_stream_leave_nothing_behind(
    client: Sandlot, server: ServerProcess
) -> None:
    """Clients that read a little of an event stream and drop the connection, while events
    flow, are let go silently: no traceback in the log, no subscription left open."""
    log = server.data_dir / "server.log"
    log_start = log.stat().st_size
    baseline = event_subscribers(server)
    headers = {"X-API-Key": server.api_key}
    with Sandbox.create(client=client) as sbx:
        stop = threading.Event()

        def churn() -> None:
            while not stop.wait(0.05):  # well inside the key's request rate
                sbx.commands.run("true")

        churner = threading.Thread(target=churn)
        churner.start()
        try:
            for i in range(45):
                path = (f"/v1/sandboxes/{sbx.id}/events?since=0", "/v1/events")[i % 3 == 1]
                if i % 3 == 2:
                    with connect(ws_url(server, path), additional_headers=headers) as ws:
                        assert "type" in json.loads(ws.recv(timeout=10))
                    continue
                with (
                    httpx.Client(base_url=server.url, headers=headers, timeout=10) as http,
                    http.stream("GET", path) as r,
                ):
                    assert r.status_code == 200
                    read = 0
                    for chunk in r.iter_raw():  # leaving mid-stream hangs up
                        read += len(chunk)
                        if read > 200:
                            break
                    assert read > 200
        finally:
            stop.set()
            churner.join()
    deadline = time.monotonic() + 10
    while (open_now := event_subscribers(server)) != baseline:
        assert time.monotonic() < deadline, f"{open_now} subscriptions open, {baseline} before"
        time.sleep(0.2)
    with log.open("rb") as f:
        f.seek(log_start)
        written = f.read().decode(errors="replace")
    assert "Traceback" not in written and "ERROR" not in written, written[-3000:]


def wait_for_metric(http: httpx.Client, sandbox_id: str, key: str, above: float) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        figures: dict[str, Any] = http.get(f"/v1/sandboxes/{sandbox_id}/metrics").json()["data"]
        if figures[key] > above:
            return figures
        assert time.monotonic() < deadline, f"{key} stayed at {figures[key]}: {figures}"
        time.sleep(0.5)


def test_cpu_burner_shows_near_its_quota(client: Sandlot, http: httpx.Client) -> None:
    with Sandbox.create(resources={"vcpus": 1}, client=client) as sbx:
        sbx.commands.run("timeout 20 sh -c 'while :; do :; done'", background=True)
        figures = wait_for_metric(http, sbx.id, "cpuPercent", 70)
        assert figures["cpuPercent"] <= 115  # bounded by its one-vCPU quota


def test_memory_hog_shows_memory_percent(client: Sandlot, http: httpx.Client) -> None:
    with Sandbox.create(resources={"memory_mb": 512}, client=client) as sbx:
        hog = "python3 -c 'import time; b = bytearray(300 * 2**20); time.sleep(30)'"
        sbx.commands.run(hog, background=True)
        figures = wait_for_metric(http, sbx.id, "memPercent", 50)
        assert figures["memLimitBytes"] == 512 * 2**20 and figures["memBytes"] > 300 * 2**20


def test_network_rates(client: Sandlot, http: httpx.Client) -> None:
    with (
        outside_hosts({"files": f"10.97.{100 + secrets.randbelow(150)}"}) as hosts,
        Sandbox.create(client=client) as sbx,
    ):
        loop = f"while :; do curl -s -o /dev/null {hosts['files'].url}blob; done"
        sbx.commands.run(f"timeout 20 sh -c '{loop}'", background=True)
        figures = wait_for_metric(http, sbx.id, "netRxBytesPerSec", 100_000)
        assert figures["netTxBytesPerSec"] > 0  # the requests and the acks


def test_prometheus_parses_and_is_admin_only(client: Sandlot, server: ServerProcess) -> None:
    with Sandbox.create(client=client) as sbx:
        time.sleep(2.5)  # one sampling pass
        text = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.api_key}"}
        ).text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert "sandlot_sandboxes" in families and "sandlot_build_info" in families
        cpu = families["sandlot_sandbox_cpu_percent"]
        assert sbx.id in {s.labels["sandbox"] for s in cpu.samples}
        running = [
            s for s in families["sandlot_sandboxes"].samples if s.labels["status"] == "running"
        ]
        assert running and running[0].value >= 1
    db = Database(f"sqlite:///{server.data_dir / 'sandlot.db'}")
    with db.session() as s:
        org = keys.create_org(s, "metrics-reader")
        _, secret = keys.create_key(s, org.id, "reader", ("sandboxes:read",))
    r = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": secret})
    assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


def test_usage_report(client: Sandlot, http: httpx.Client) -> None:
    sbx = Sandbox.create(resources={"vcpus": 2, "memory_mb": 256}, client=client)
    time.sleep(1)
    sbx.kill()
    report = http.get("/v1/usage").json()["data"]
    mine = next(r for r in report["sandboxes"] if r["id"] == sbx.id)
    assert mine["runtimeSeconds"] >= 1
    assert mine["vcpuSeconds"] == pytest.approx(2 * mine["runtimeSeconds"], rel=0.01)
    assert mine["memoryMbSeconds"] == pytest.approx(256 * mine["runtimeSeconds"], rel=0.01)
    assert report["total"]["runtimeSeconds"] >= mine["runtimeSeconds"]
    bad = http.get(
        "/v1/usage", params={"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_CONFIG"
