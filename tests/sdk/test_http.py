"""Requests the SDK builds and answers it parses, against `httpx.MockTransport`.

These pin the wire contract without a server; tests/e2e covers the real one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import httpx
import pytest

from sandlot import AsyncSandlot, Sandlot
from sandlot.errors import (
    CommandTimeoutError,
    FileNotFoundInSandboxError,
    InternalError,
    RateLimitedError,
    SandboxNotFoundError,
    SandlotError,
)
from sandlot.sdk import AsyncSandbox, Sandbox

from .test_models import SANDBOX

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler) -> Sandlot:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return Sandlot(api_url="http://sandlot.test", api_key="k1", http_client=http)


def data(payload: object, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"data": payload})


def error(status: int, code: str, **details: object) -> httpx.Response:
    body = {"code": code, "message": f"{code} happened", "retryable": False, "details": details}
    return httpx.Response(status, json={"error": body})


def test_create_sends_camel_case_and_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return data(SANDBOX, 201)

    with client_for(handler) as client:
        sbx = client.sandboxes.create(
            resources={"vcpus": 1, "memory_mb": 512}, env={"A": "1"}, metadata={"user": "u1"}
        )
    assert sbx.id == "sbx-7k2m9p4q1x" and sbx.status == "running"
    request = seen[0]
    assert (request.method, request.url.path) == ("POST", "/v1/sandboxes")
    assert request.headers["X-API-Key"] == "k1"
    assert json.loads(request.content) == {
        "template": "base",
        "resources": {"vcpus": 1, "memoryMb": 512},
        "env": {"A": "1"},
        "metadata": {"user": "u1"},
        "idleTimeout": 600,
        "timeout": None,
    }


def test_list_filters_become_query_parameters() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        body = {"data": [SANDBOX], "pagination": {"limit": 5, "offset": 10, "total": 11}}
        return httpx.Response(200, json=body)

    with client_for(handler) as client:
        infos = Sandbox.list(
            status="running", metadata={"user": "u1"}, limit=5, offset=10, client=client
        )
    assert [info.id for info in infos] == ["sbx-7k2m9p4q1x"]
    assert dict(seen[0].params) == {
        "metadata.user": "u1",
        "status": "running",
        "limit": "5",
        "offset": "10",
    }


def test_exec_read_timeout_outlasts_the_command() -> None:
    timeouts: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return data(SANDBOX)
        timeouts.append(request.extensions["timeout"])
        result = {"stdout": "1\n", "stderr": "", "exitCode": 3, "signal": None, "durationMs": 2.0}
        return data(result)

    with client_for(handler) as client:
        sbx = client.sandboxes.get("sbx-7k2m9p4q1x")
        result = sbx.commands.run("exit 3", timeout=30)
        assert (result.stdout, result.exit_code) == ("1\n", 3)
        sbx.commands.run("sleep 1000", timeout=None)
    assert timeouts[0]["read"] == 60.0
    assert timeouts[1]["read"] is None


def test_command_timeout_carries_the_output_so_far() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return data(SANDBOX)
        return error(504, "SANDBOX_TIMEOUT", stdout="started\n", stderr="")

    with client_for(handler) as client, pytest.raises(CommandTimeoutError) as err:
        client.sandboxes.get("sbx-7k2m9p4q1x").commands.run("sleep 9", timeout=1)
    assert err.value.code == "SANDBOX_TIMEOUT"
    assert (err.value.stdout, err.value.stderr) == ("started\n", "")
    assert err.value.details["stdout"] == "started\n"


def test_error_codes_map_to_their_exceptions() -> None:
    client = client_for(lambda _: error(404, "SANDBOX_NOT_FOUND"))
    with client, pytest.raises(SandboxNotFoundError) as err:
        client.sandboxes.get("sbx-0000000000")
    assert err.value.message == "SANDBOX_NOT_FOUND happened" and not err.value.retryable


def test_unknown_code_keeps_its_code() -> None:
    with client_for(lambda _: error(418, "TEAPOT")) as client, pytest.raises(SandlotError) as err:
        client.sandboxes.get("sbx-0000000000")
    assert type(err.value) is SandlotError and err.value.code == "TEAPOT"


def test_retry_after_reaches_the_details() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        response = error(429, "RATE_LIMITED")
        response.headers["Retry-After"] = "3"
        return response

    with client_for(handler) as client, pytest.raises(RateLimitedError) as err:
        client.sandboxes.list()
    assert err.value.details["retryAfter"] == "3"


def test_an_answer_without_an_error_body_is_internal() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with client_for(handler) as client, pytest.raises(InternalError) as err:
        client.sandboxes.list()
    assert "502" in err.value.message and err.value.retryable


def test_unreachable_server_says_how_to_start_one() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with client_for(handler) as client, pytest.raises(InternalError) as err:
        client.sandboxes.list()
    assert "http://sandlot.test" in err.value.message and "sandlot serve" in err.value.message
    assert err.value.retryable


def test_files_stream_both_ways() -> None:
    stored: dict[str, bytes] = {}
    uploads: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.params.get("path", "")
        if request.url.path.endswith("/files") and request.method == "PUT":
            uploads.append(request)
            stored[path] = request.read()
            return data(entry(path, len(stored[path])))
        if request.url.path.endswith("/files") and request.method == "GET":
            if path not in stored:
                return error(404, "FILE_NOT_FOUND")
            return httpx.Response(200, content=stored[path])
        return data(SANDBOX)

    payload = bytes(range(256)) * 10_000
    with client_for(handler) as client:
        files = client.sandboxes.get("sbx-7k2m9p4q1x").files
        assert files.write("/w/a.txt", "héllo").size == len("héllo".encode())
        assert files.read("/w/a.txt") == "héllo"
        assert files.upload("/w/big.bin", io.BytesIO(payload), mode=0o600).size == len(payload)
        sink = io.BytesIO()
        assert files.download("/w/big.bin", sink) == len(payload)
        assert sink.getvalue() == payload
        with pytest.raises(FileNotFoundInSandboxError):
            files.read_bytes("/w/missing")
    assert uploads[1].headers["Content-Length"] == str(len(payload))
    assert uploads[1].url.params["mode"] == "384"


def test_exists_and_replace() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stat"):
            path = request.url.params["path"]
            return data(entry(path, 1)) if path == "/here" else error(404, "FILE_NOT_FOUND")
        if request.url.path.endswith("/replace"):
            body = json.loads(request.content)
            assert body == {"path": "/here", "old": "hi", "new": "hello", "count": None}
            return data({"path": "/here", "replacements": 1})
        return data(SANDBOX)

    with client_for(handler) as client:
        files = client.sandboxes.get("sbx-7k2m9p4q1x").files
        assert files.exists("/here") and not files.exists("/gone")
        assert files.replace("/here", old="hi", new="hello") == 1


async def test_async_twin_parses_the_same() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.method == "DELETE":
            return data({**SANDBOX, "status": "terminated"})
        if request.url.path.endswith("/exec"):
            return data({"stdout": "a\n", "stderr": "", "exitCode": 0, "durationMs": 1})
        if request.url.path.endswith("/files"):
            return httpx.Response(200, content=b"\x00\x01")
        return data(SANDBOX, 201)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with AsyncSandlot(api_url="http://sandlot.test", api_key="k", http_client=http) as c:
        async with AsyncSandbox.create(client=c) as sbx:
            assert (await sbx.commands.run("echo a")).stdout == "a\n"
            assert await sbx.files.read_bytes("/w/b") == b"\x00\x01"
        assert sbx.status == "terminated"
        again = await AsyncSandbox.create(client=c)
        assert again.id == "sbx-7k2m9p4q1x"
    assert seen[0] == "POST /v1/sandboxes" and "DELETE /v1/sandboxes/sbx-7k2m9p4q1x" in seen


def test_context_manager_tolerates_an_already_destroyed_sandbox() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return error(404, "SANDBOX_NOT_FOUND")
        return data(SANDBOX, 201)

    with client_for(handler) as client, Sandbox.create(client=client) as sbx:
        assert sbx.status == "running"


def test_client_and_credentials_are_exclusive() -> None:
    with client_for(lambda _: data(SANDBOX)) as client, pytest.raises(ValueError):
        Sandbox.get("sbx-7k2m9p4q1x", client=client, api_key="other")


def entry(path: str, size: int) -> dict[str, object]:
    return {
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "type": "file",
        "size": size,
        "mode": 0o644,
        "mtime": "2025-01-02T03:04:05Z",
        "symlinkTarget": None,
    }
