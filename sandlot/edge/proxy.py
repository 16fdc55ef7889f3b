"""Preview URLs: `{port}-{sandbox_id}.{domain}` relayed to that port on the sandbox.

A preview connection is paired one to one with a TCP connection to the sandbox and bytes
are copied between the two as they come (asyncio protocols, with reading paused on
either side while the other cannot take more). Only request heads are parsed, with
httptools, to check each request's token, note activity, and rewrite what the upstream
must not see: the Host becomes `localhost:PORT` (which dev servers with host checks, Vite
or webpack, accept), the token leaves the header, query and cookie, and X-Forwarded-*
name the caller. Responses are never parsed, so streaming, server-sent events and a
WebSocket after its upgrade cost one copy per read. Relaying below ASGI, rather than a
pooled HTTP client inside it, is what brings the proxy near the upstream's own
throughput; `sandlot.edge.front` hands a connection here on its first request head.

A token, where the port wants one, comes as the `X-Sandlot-Token` header, as `?token=`
or as the cookie `?token=` sets on that preview host, so a browser opened on the URL keeps
working as it follows links. The cookie goes into the first response that starts after
the request that carried the token: clients that wait for each response before the next
request (browsers, curl, every HTTP library in common use) get it on that response.

Refusals (unknown sandbox, port not exposed, wrong token, nothing listening) are answered
with Sandlot's JSON error envelope and the connection is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import cast
from urllib.parse import unquote

import httptools

from sandlot.core.service import SandboxService
from sandlot.errors import ConnectFailedError, InvalidConfigError, SandlotError

TOKEN_HEADER = b"x-sandlot-token"
TOKEN_COOKIE = "sandlot-token"
PREVIEW_LABEL = re.compile(r"^(\d{1,5})-(sbx-[a-z0-9]+)$")
CONNECT_TIMEOUT = 5.0
"""Only connecting is bounded: a dev server may stream (server-sent events) for hours."""


class PreviewRoutes:
    """Which Host names are previews, and the service that admits requests to them."""

    def __init__(self, service: SandboxService, domain: str) -> None:
        self.service = service
        self.suffix = "." + domain.lower().strip(".")

    def target(self, host: bytes) -> tuple[int, str] | None:
        """(port, sandbox id) when `host` names a preview."""
        name = host.decode("latin-1").strip().lower().rsplit(":", 1)[0]
        if not name.endswith(self.suffix):
            return None
        match = PREVIEW_LABEL.match(name[: -len(self.suffix)])
        if match is None or not 0 < int(match[1]) < 65536:
            return None
        return int(match[1]), match[2]


class PreviewConnection(asyncio.Protocol):
    """One caller's connection to a preview, relayed to its own upstream connection."""

    def __init__(self, routes: PreviewRoutes, host: bytes) -> None:
        self.routes = routes
        self.host = host
        target = routes.target(host)
        assert target is not None, "handed a connection that is no preview"
        self.port, self.sandbox_id = target
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.upstream: Upstream | None = None
        self.held: list[bytes] | None = []
        """Bytes for the upstream while it is being reached (or the sandbox woken)."""
        self.waking: str | None = None
        """The token of the request that must wait for the sandbox to be resumed."""
        self.raw = False
        self.refusal: SandlotError | None = None
        self.forwarded: bytes = b""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.holds: set[str] = set()
        """Why reading from the caller is paused: "connect", "wake"."""
        self.first_cookie: bytes | None = None
        """The cookie for the upstream connection's first response, once it is made."""

    # -- the caller's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        scheme = b"https" if transport.get_extra_info("sslcontext") else b"http"
        self.forwarded = (
            b"X-Forwarded-Host: " + self.host + b"\r\nX-Forwarded-Proto: " + scheme + b"\r\n"
        )
        if isinstance(peer, tuple):
            self.forwarded += b"X-Forwarded-For: " + str(peer[0]).encode() + b"\r\n"

    def data_received(self, data: bytes) -> None:
        if self.raw:
            self._send(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.raw = True  # a WebSocket (or any upgrade): bytes both ways from here
            self._send(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self.refuse(self.refusal or InvalidConfigError("malformed HTTP request"))

    def eof_received(self) -> bool:
        if self.upstream is not None and self.upstream.transport.can_write_eof():
            self.upstream.transport.write_eof()  # the upstream still answers what it has
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()

    # -- httptools callbacks, one request at a time

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        token, url = _token_in_query(self.url)
        from_query = token is not None
        head = [b"%s %s HTTP/%s\r\n" % (self.parser.get_method(), url, _version(self.parser))]
        head.append(b"Host: localhost:%d\r\n" % self.port)
        head.append(self.forwarded)
        self.chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == b"host":
                if value != self.host and self.routes.target(value) != (self.port, self.sandbox_id):
                    self.refusal = InvalidConfigError(
                        "one connection serves one preview; open another for "
                        + value.decode("latin-1")
                    )
                    raise self.refusal
                continue
            if lower == TOKEN_HEADER:
                token = token or value.decode("latin-1")
                continue
            if lower == b"cookie":
                found, value = _token_cookie(value)
                token = token or found
                if not value:
                    continue
            elif lower == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            head.append(b"%s: %s\r\n" % (name, value))
        head.append(b"\r\n")
        self._admit(token)
        if from_query:
            assert token is not None
            self._due_cookie(token)
        self._send(b"".join(head))

    def on_body(self, body: bytes) -> None:
        if self.chunked:  # httptools hands over the chunks' data; framed again as read
            self._send(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self._send(body)

    def on_message_complete(self) -> None:
        if self.chunked:
            self._send(b"0\r\n\r\n")

    # -- admission and the upstream

    def _admit(self, token: str | None) -> None:
        """Checks the token and notes activity on every request; a paused sandbox is
        woken (asynchronously) before anything more goes to it."""
        if self.waking is not None:
            return  # the wake-up checks again, with the first request's token
        try:
            address = self.routes.service.previews.address(self.sandbox_id, self.port, token)
        except SandlotError as exc:
            self.refusal = exc
            raise
        if address is None:
            self.waking = token or ""
            self._hold("wake")
            self.loop.create_task(self._wake(self.waking))
        elif self.upstream is None and "connect" not in self.holds:
            self._hold("connect")
            self.loop.create_task(self._connect(address))

    async def _wake(self, token: str) -> None:
        try:
            address = await self.routes.service.previews.target(
                self.sandbox_id, self.port, token or None
            )
        except SandlotError as exc:
            self.refuse(exc)
            return
        self.waking = None
        if self.upstream is None:
            self._hold("connect")
            self._release("wake")
            await self._connect(address)
        else:
            self._release("wake")
            self._flush()

    async def _connect(self, address: str) -> None:
        try:
            _, upstream = await asyncio.wait_for(
                self.loop.create_connection(lambda: Upstream(self), address, self.port),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            self.refuse(
                ConnectFailedError(
                    f"nothing answered on port {self.port} of the sandbox "
                    f"({type(exc).__name__}); is the server inside listening on 0.0.0.0?",
                    details={"port": self.port},
                )
            )
            return
        if self.transport is None or self.transport.is_closing():
            upstream.transport.close()
            return
        self.upstream = upstream
        self._release("connect")
        self._flush()

    def _flush(self) -> None:
        if self.upstream is None or self.waking is not None or self.held is None:
            return
        self.upstream.transport.write(b"".join(self.held))
        self.held = None

    def _send(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        elif self.upstream is not None and data:
            self.upstream.transport.write(data)

    def _due_cookie(self, token: str) -> None:
        cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
        if self.upstream is not None:
            self.upstream.cookie = cookie.encode()
        else:
            self.first_cookie = cookie.encode()

    def _hold(self, reason: str) -> None:
        if not self.holds and self.transport is not None:
            self.transport.pause_reading()
        self.holds.add(reason)
        if self.held is None:
            self.held = []

    def _release(self, reason: str) -> None:
        self.holds.discard(reason)
        if not self.holds and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def refuse(self, exc: SandlotError) -> None:
        """The error envelope, then the end of the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        body = json.dumps({"error": exc.to_dict()}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (exc.status, _reason(exc.status), len(body), body)
        )
        self.transport.close()


class Upstream(asyncio.Protocol):
    """The sandbox's side: what it sends goes to the caller unparsed."""

    def __init__(self, caller: PreviewConnection) -> None:
        self.caller = caller
        self.cookie = caller.first_cookie
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        out = self.caller.transport
        assert out is not None
        if self.cookie is not None:
            line_end = data.find(b"\r\n")
            if line_end < 0:  # a status line split across reads: rare enough to not wait
                line_end = len(data)
            data = (
                data[: line_end + 2]
                + b"Set-Cookie: "
                + self.cookie
                + b"\r\n"
                + data[line_end + 2 :]
            )
            self.cookie = None
        out.write(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.caller.transport is not None:
            self.caller.transport.close()

    def pause_writing(self) -> None:
        if self.caller.transport is not None:
            self.caller.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.caller.transport is not None and not self.caller.holds:
            self.caller.transport.resume_reading()


def _version(parser: httptools.HttpRequestParser) -> bytes:
    return parser.get_http_version().encode()


def _token_in_query(url: bytes) -> tuple[str | None, bytes]:
    """The token given as `?token=` and the URL without it; other parameters are left
    exactly as sent."""
    path, sep, query = url.partition(b"?")
    if not sep or b"token=" not in query:
        return None, url
    token = None
    kept = []
    for part in query.split(b"&"):
        if part.startswith(b"token=") and token is None:
            token = unquote(part[6:].decode("latin-1").replace("+", " "))
        else:
            kept.append(part)
    return token, path + (b"?" + b"&".join(kept) if kept else b"")


def _token_cookie(value: bytes) -> tuple[str | None, bytes]:
    """The token cookie's value and the Cookie header without it."""
    if TOKEN_COOKIE.encode() not in value:
        return None, value
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(CookieError):
        jar.load(value.decode("latin-1"))
    token = jar[TOKEN_COOKIE].value if TOKEN_COOKIE in jar else None
    prefix = TOKEN_COOKIE.encode() + b"="
    parts = [p for p in value.split(b";") if not p.strip().startswith(prefix)]
    return token, b";".join(parts).strip()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Error"
