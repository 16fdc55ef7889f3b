"""Failures inside the server, provoked for real (a data directory the server may not
write), reach users as a sentence and an error id; the log holds the rest. Input that
once caused such a failure is refused as input."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess

LOGGED = r"\(id ([0-9a-f]{12})\): the server logged the details"


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Nothing may be created in `path` while this lasts, not even by root."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make {path} immutable here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def logged_since(server: ServerProcess, offset: int) -> str:
    with (server.data_dir / "server.log").open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.api_key}, timeout=60) as c:
        yield c


def test_unforeseen_failure_is_internal_with_an_id_and_no_path(
    client: Sandlot, server: ServerProcess, http: httpx.Client
) -> None:
    with Sandbox.create(client=client) as sbx:
        made = http.post(f"/v1/sandboxes/{sbx.id}/snapshots", json={"memory": False})
        assert made.status_code == 201, made.text
        snapshot_dir = server.data_dir / "snapshots" / made.json()["data"]["id"]
        offset = (server.data_dir / "server.log").stat().st_size
        with immutable(snapshot_dir):  # a patch stages its work in there
            r = http.post(
                f"/v1/sandboxes/{sbx.id}/snapshots/{snapshot_dir.name}/patches",
                json={"script": "true"},
            )
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert err["code"] == "INTERNAL"
    found = re.fullmatch(f"operation not permitted {LOGGED}", err["message"])
    assert found, err["message"]
    assert err["details"] == {"errorId": found[1]}
    assert str(server.data_dir) not in r.text and "Errno" not in r.text
    log = logged_since(server, offset)
    assert f"(error id {found[1]})" in log
    assert "PermissionError: [Errno 1] Operation not permitted" in log and "Traceback" in log


def test_sandbox_failure_names_the_operation_and_an_id_not_the_host_path(
    client: Sandlot, server: ServerProcess, http: httpx.Client
) -> None:
    with Sandbox.create(client=client) as sbx:
        offset = (server.data_dir / "server.log").stat().st_size
        with immutable(server.data_dir / "snapshots"):
            r = http.post(f"/v1/sandboxes/{sbx.id}/snapshots", json={"memory": False})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "SANDBOX_UNAVAILABLE" and err["retryable"] is True
        found = re.fullmatch(
            f"could not snapshot {sbx.id}: operation not permitted {LOGGED}", err["message"]
        )
        assert found, err["message"]
        assert str(server.data_dir) not in r.text
        assert f"snapshotting {sbx.id} (error id {found[1]})" in logged_since(server, offset)
        assert sbx.commands.run("echo still here").stdout == "still here\n"


def test_numbers_past_the_stores_integers_are_bad_input_not_a_failure(
    server: ServerProcess, http: httpx.Client
) -> None:
    """The schema fuzzer's finds: an offset past 2**63 reached SQLite and failed there, and
    so did a date that UTC cannot hold."""
    too_big = 2**63
    for path in (f"/v1/sandboxes?offset={too_big}", f"/v1/events?since={too_big}"):
        r = http.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["error"]["code"] == "INVALID_CONFIG"
    assert http.get(f"/v1/sandboxes?offset={too_big - 1}").json()["data"] == []
    for window in (
        {"to": "0001-01-01T00:30:00+01:00"},  # before year 1 in UTC
        {"to": "9999-12-31T23:30:00-01:00"},  # past 9999 in UTC
        {"to": "0001-01-01T12:00:00Z"},  # the default day before it is not there
    ):
        r = http.get("/v1/usage", params=window)
        assert r.status_code == 400, (window, r.text)
        assert r.json()["error"]["code"] == "INVALID_CONFIG"
    edge = {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}
    assert http.get("/v1/usage", params=edge).json()["data"]["sandboxes"] == []
    ws_url = server.url.replace("http://", "ws://") + f"/v1/events?since={too_big}"
    with connect(ws_url, additional_headers={"X-API-Key": server.api_key}) as ws:
        refused = json.loads(ws.recv(timeout=10))
    assert refused["type"] == "error" and refused["error"]["code"] == "INVALID_CONFIG"


def test_a_checkpoint_that_fails_tells_the_tenant_no_host_path_or_pid(client: Sandlot) -> None:
    """A sandbox serving TCP cannot be dumped by this CRIU: its pause falls back to a
    freeze, and the reason it shows names neither CRIU's log nor a host pid."""
    with Sandbox.create(client=client) as sbx:
        sbx.commands.run("python3 -m http.server 3000 >/dev/null 2>&1 &")
        time.sleep(1)
        sbx.pause()
        info = sbx.refresh()
        if info.pause_mode == "checkpoint":
            pytest.skip("CRIU here dumps a listening socket: no failed checkpoint to read")
        reason = info.status_reason or ""
        assert re.search(LOGGED, reason), reason
        assert "/run/" not in reason and ".log" not in reason and "ns/net" not in reason
        assert not re.search(r"\b\d{3,}/", reason), reason  # no /proc-style pid paths
        sbx.resume()
        assert sbx.commands.run("echo still-here").stdout == "still-here\n"
