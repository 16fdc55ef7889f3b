"""The public port's first word on each connection: API or preview.

Preview URLs are served on the API's own port (one port to open, one name to point at
the host), so every connection starts with this protocol, which uvicorn creates in place
of its own (`uvicorn.Config(http=...)`). It reads up to the end of the first request
head and looks at the Host: a preview name hands the connection to the preview relay
(`sandlot.edge.proxy`), anything else to uvicorn's HTTP protocol, which then sees the
connection as if it had been its own from the start. The API pays one search for the
head's end and one for its Host line per connection, not per request.

It is also where a connection is first seen, so it holds the two bounds that keep
idle sockets from using up the server's descriptors: a client has `HEAD_TIMEOUT`
seconds to send its first request head (a connection that never does is closed, not
held for ever), and one client address may hold at most `MAX_CONNECTIONS_PER_CLIENT`
open connections at once (more are answered 429 and closed).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandlot.edge.proxy import PreviewConnection, PreviewRoutes
from sandlot.errors import RateLimitedError

MAX_HEAD = 64 * 1024
"""Past this without a head's end, uvicorn gets the connection and answers it."""
HEAD_TIMEOUT = 15.0
"""Seconds a new connection has to send its first request head."""
MAX_CONNECTIONS_PER_CLIENT = 512
_SWEEP_EVERY = 1024


class ClientConnections:
    """The open connections of each client address, counted from their transports (a
    connection handed to uvicorn, or upgraded to a WebSocket, changes protocol but keeps
    its transport, which says when it has closed)."""

    def __init__(self, limit: int = MAX_CONNECTIONS_PER_CLIENT) -> None:
        self.limit = limit
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._admitted = 0

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        live = {t for t in self._open.get(client, ()) if not t.is_closing()}
        self._admitted += 1
        if self._admitted % _SWEEP_EVERY == 0:
            self._sweep()
        if len(live) >= self.limit:
            self._open[client] = live
            return False
        live.add(transport)
        self._open[client] = live
        return True

    def _sweep(self) -> None:
        for client, transports in list(self._open.items()):
            live = {t for t in transports if not t.is_closing()}
            if live:
                self._open[client] = live
            else:
                del self._open[client]


class FrontProtocol(asyncio.Protocol):
    def __init__(
        self, routes: PreviewRoutes, connections: ClientConnections, **uvicorn: Any
    ) -> None:
        self.routes = routes
        self.connections = connections
        self.uvicorn = uvicorn
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        if not self.connections.admit(transport):
            self.transport.write(_TOO_MANY)
            self.transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # refused, or out of time: nothing more is read
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 and len(self.buffer) < MAX_HEAD:
            return
        host = _host(self.buffer[:end]) if end >= 0 else None
        protocol: asyncio.Protocol
        if host is not None and self.routes.target(host) is not None:
            protocol = PreviewConnection(self.routes, host)
        else:
            protocol = HttpToolsProtocol(**self.uvicorn)
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)

    def eof_received(self) -> bool:
        return False  # closed before a whole head: nothing to answer


def _refusal() -> bytes:
    error = RateLimitedError(
        f"this client holds {MAX_CONNECTIONS_PER_CLIENT} connections already; reuse them "
        "or close some",
        details={"limit": MAX_CONNECTIONS_PER_CLIENT},
    )
    body = json.dumps({"error": error.to_dict()}).encode()
    head = (
        f"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
        f"Retry-After: 1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY = _refusal()


def _host(head: bytes) -> bytes | None:
    start = head.lower().find(b"\r\nhost:")
    if start < 0:
        return None
    start += len(b"\r\nhost:")
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip()
