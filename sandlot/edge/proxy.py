"""Preview URLs: `{port}-{sandbox_id}.{domain}` proxied to that port on the sandbox.

Served on the API's own port by routing on the Host header, as ASGI middleware in front
of the API: a request for a preview name never reaches the API's routes, every other
request never pays for more than one suffix check. HTTP/1.1 bodies stream both ways
(httpx), WebSockets are relayed frame by frame (websockets). The upstream sees
`Host: localhost:PORT`, which dev servers with host checks (Vite, webpack) accept, plus
the usual X-Forwarded-* headers.

A token, where the port wants one, comes as the `X-Sandlot-Token` header or as
`?token=`; the latter also sets a cookie scoped to that preview host, so a browser
opened on the URL keeps working as it follows links.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from sandlot.core.service import SandboxService
from sandlot.errors import ConnectFailedError, SandlotError

TOKEN_HEADER = b"x-sandlot-token"
TOKEN_COOKIE = "sandlot-token"
PREVIEW_LABEL = re.compile(r"^(\d{1,5})-(sbx-[a-z0-9]+)$")
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        TOKEN_HEADER,
    }
)
CONNECT_TIMEOUT = 5.0
UPSTREAM_TIMEOUTS = {"connect": CONNECT_TIMEOUT, "read": None, "write": None, "pool": None}
"""Only connecting is bounded: a dev server may stream (server-sent events) for hours."""


class PreviewProxy:
    def __init__(self, app: ASGIApp, service: SandboxService, domain: str) -> None:
        self.app = app
        self.service = service
        self.suffix = "." + domain.lower().strip(".")
        self._transport: httpx.AsyncHTTPTransport | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _preview_of(scope, self.suffix) if scope["type"] != "lifespan" else None
        if target is None:
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self._closing_on_shutdown(send))
            else:
                await self.app(scope, receive, send)
            return
        port, sandbox_id, host = target
        token, query, from_query = _token_of(scope)
        try:
            address = await self.service.preview_target(sandbox_id, port, token)
        except SandlotError as exc:
            await _refuse(scope, send, exc)
            return
        upstream = _Upstream(address, port, scope["path"], query, host)
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, upstream)
        else:
            cookie = token if from_query else None
            await self._http(scope, receive, send, upstream, cookie)

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._transport is not None:
                await self._transport.aclose()
            await send(message)

        return wrapped

    @property
    def transport(self) -> httpx.AsyncHTTPTransport:
        """httpx's pooled transport without its client layer: no cookie jar shared
        between sandboxes, no redirects followed, and half the cost per request."""
        if self._transport is None:
            self._transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=200)
            )
        return self._transport

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        upstream: _Upstream,
        cookie: str | None,
    ) -> None:
        headers = upstream.headers(scope)
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        request = httpx.Request(
            scope["method"],
            upstream.url("http"),
            headers=headers,
            content=_request_body(receive) if has_body else None,
            extensions={"timeout": UPSTREAM_TIMEOUTS},
        )
        try:
            response = await self.transport.handle_async_request(request)
        except httpx.TransportError as exc:
            await _refuse(scope, send, upstream.unreachable(exc))
            return
        try:
            out = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            if cookie is not None:
                out.append((b"set-cookie", _cookie(cookie)))
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": out}
            )
            async for chunk in response.stream:  # type: ignore[union-attr]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, upstream: _Upstream
    ) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in upstream.headers(scope)
            if not k.startswith(b"sec-websocket-") and k != b"host"  # from the URL
        ]
        try:
            inner = await connect(
                upstream.url("ws"),
                host=upstream.address,
                port=upstream.port,
                additional_headers=headers,
                subprotocols=scope.get("subprotocols") or None,
                max_size=None,
                compression=None,
                open_timeout=CONNECT_TIMEOUT,
                user_agent_header=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            await send({"type": "websocket.close", "code": 1011 if status is None else 1008})
            return
        async with inner:
            await send({"type": "websocket.accept", "subprotocol": inner.subprotocol})
            await _relay(receive, send, inner)


class _Upstream:
    """One request's destination inside the sandbox."""

    def __init__(self, address: str, port: int, path: str, query: str, host: str) -> None:
        self.address = address
        self.port = port
        self.path = path
        self.query = query
        self.host = host

    def url(self, scheme: str) -> str:
        suffix = f"?{self.query}" if self.query else ""
        if scheme == "ws":  # connected to the address; the URL only names the Host
            return f"ws://localhost:{self.port}{self.path}{suffix}"
        return f"http://{self.address}:{self.port}{self.path}{suffix}"

    def headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP]
        kept = [(k, _without_token_cookie(v)) if k == b"cookie" else (k, v) for k, v in kept]
        client = scope.get("client")
        forwarded = [
            (b"host", f"localhost:{self.port}".encode()),
            (b"x-forwarded-host", self.host.encode()),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
        ]
        if client:
            forwarded.append((b"x-forwarded-for", client[0].encode()))
        return [*forwarded, *kept]

    def unreachable(self, exc: Exception) -> ConnectFailedError:
        return ConnectFailedError(
            f"nothing answered on port {self.port} of the sandbox ({type(exc).__name__}); "
            "is the server inside listening on 0.0.0.0?",
            details={"port": self.port},
        )


def _preview_of(scope: Scope, suffix: str) -> tuple[int, str, str] | None:
    """(port, sandbox id, host) when the Host header names a preview."""
    for key, value in scope["headers"]:
        if key == b"host":
            host = value.decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if ":" in host else host
            if not name.endswith(suffix):
                return None
            match = PREVIEW_LABEL.match(name[: -len(suffix)])
            if match is None or not 0 < int(match[1]) < 65536:
                return None
            return int(match[1]), match[2], host
    return None


def _token_of(scope: Scope) -> tuple[str | None, str, bool]:
    """The caller's token, the query string to forward (without the token) and whether the
    token came in the query."""
    query = scope.get("query_string", b"").decode("latin-1")
    if "token=" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        token = next((v for k, v in pairs if k == "token"), None)
        if token is not None:
            return token, urlencode([(k, v) for k, v in pairs if k != "token"]), True
    for key, value in scope["headers"]:
        if key == TOKEN_HEADER:
            return value.decode("latin-1"), query, False
    for key, value in scope["headers"]:
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(Exception):
                jar.load(value.decode("latin-1"))
            if TOKEN_COOKIE in jar:
                return jar[TOKEN_COOKIE].value, query, False
    return None, query, False


def _without_token_cookie(value: bytes) -> bytes:
    parts = [p for p in value.split(b";") if not p.strip().startswith(TOKEN_COOKIE.encode() + b"=")]
    return b";".join(parts).strip()


def _cookie(token: str) -> bytes:
    return f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax".encode()


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body: bytes = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def _refuse(scope: Scope, send: Send, exc: SandlotError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return
    body = json.dumps({"error": exc.to_dict()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _relay(receive: Receive, send: Send, inner: ClientConnection) -> None:
    """Frames both ways until either side closes; the other side is then closed too."""

    async def outward() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await inner.close()
                return
            data: Any = (
                message.get("bytes") if message.get("bytes") is not None else message.get("text")
            )
            await inner.send(data)

    async def inward() -> None:
        try:
            async for data in inner:
                key = "bytes" if isinstance(data, bytes) else "text"
                await send({"type": "websocket.send", key: data})
        except ConnectionClosed:
            pass
        code = inner.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": code})

    tasks = [asyncio.create_task(outward()), asyncio.create_task(inward())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
