"""The public port's first word on each connection: API or preview.

Preview URLs are served on the API's own port (one port to open, one name to point at
the host), so every connection starts with this protocol, which uvicorn creates in place
of its own (`uvicorn.Config(http=...)`). It reads up to the end of the first request
head and looks at the Host: a preview name hands the connection to the preview relay
(`sandlot.edge.proxy`), anything else to uvicorn's HTTP protocol, which then sees the
connection as if it had been its own from the start. The API pays one search for the
head's end and one for its Host line per connection, not per request.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sandlot.edge.proxy import PreviewConnection, PreviewRoutes

MAX_HEAD = 64 * 1024
"""Past this without a head's end, uvicorn gets the connection and answers it."""


class FrontProtocol(asyncio.Protocol):
    def __init__(self, routes: PreviewRoutes, **uvicorn: Any) -> None:
        self.routes = routes
        self.uvicorn = uvicorn
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
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
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.buffer)

    def eof_received(self) -> bool:
        return False  # closed before a whole head: nothing to answer


def _host(head: bytes) -> bytes | None:
    start = head.lower().find(b"\r\nhost:")
    if start < 0:
        return None
    start += len(b"\r\nhost:")
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip()
