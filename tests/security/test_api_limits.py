"""What a tenant can make the API server hold: request bodies, environments, sockets
that never send a request, too many sockets at once, and a partial network update
that must not reopen a locked-down sandbox. Each through the real server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.api.body_limit import MAX_BODY_BYTES
from sandlot.edge.front import HEAD_TIMEOUT, MAX_CONNECTIONS_PER_CLIENT
from sandlot.testing import ServerProcess


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


def test_a_body_past_the_limit_is_refused_before_it_is_read(http: httpx.Client) -> None:
    huge = {"template": "base", "env": {"BIG": "x" * (MAX_BODY_BYTES + 1)}}
    answer = http.post("/v1/sandboxes", json=huge)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "REQUEST_TOO_LARGE"
    assert answer.json()["error"]["retryable"] is False

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"template": "base", "env": {"BIG": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}}'

    answer = http.post(
        "/v1/sandboxes", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "REQUEST_TOO_LARGE"


def test_an_environment_is_bounded_within_a_small_body(http: httpx.Client) -> None:
    env = {f"V{i}": "y" * 1000 for i in range(300)}  # 300 KB: under the body limit
    answer = http.post("/v1/sandboxes", json={"template": "base", "env": env})
    assert answer.status_code == 400, answer.text
    assert "at most 262144" in answer.json()["error"]["message"]
    many = {f"V{i}": "" for i in range(600)}
    answer = http.post("/v1/sandboxes", json={"template": "base", "env": many})
    assert answer.status_code == 400
    assert "at most 512 environment variables" in answer.json()["error"]["message"]


def test_a_connection_that_never_sends_a_request_is_closed(server: ServerProcess) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]
    started = time.monotonic()
    try:
        for sock in idle:
            sock.settimeout(HEAD_TIMEOUT + 10)
            assert sock.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < HEAD_TIMEOUT + 5
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_one_client_holds_a_bounded_number_of_connections(server: ServerProcess) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port))) for _ in range(MAX_CONNECTIONS_PER_CLIENT)]
    try:
        time.sleep(0.2)  # the server has taken them all
        extra = socket.create_connection((host, int(port)))
        extra.settimeout(10)
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
        extra.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429")
        error = json.loads(body)["error"]
        assert (error["code"], error["retryable"]) == ("RATE_LIMITED", True)
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_partial_network_update_changes_only_what_it_names(client: Sandlot) -> None:
    locked = {"default": "deny", "allow": ["pypi.org"], "deny": []}
    with Sandbox.create(
        client=client, network={"egress": locked, "ingress": {"allowPorts": []}}
    ) as sbx:
        info = sbx.update_network(ingress={"allowPorts": [8000]})
        assert info.network == {
            "egress": {"default": "deny", "allow": ["pypi.org"], "deny": []},
            "ingress": {"allowPorts": [8000]},
        }
        info = sbx.update_network(egress={"allow": ["example.com"]})
        assert info.network == {
            "egress": {"default": "deny", "allow": ["example.com"], "deny": []},
            "ingress": {"allowPorts": [8000]},
        }
