"""A bound on request bodies, before anything reads them.

Every JSON body (a create, an exec, a key) is small by nature; without a bound a tenant
could send hundreds of MiB that pydantic then holds and the store keeps. Routes whose
body is a stream (a file upload, a template build's context) are exempt: they are
consumed in chunks and bounded by the sandbox's disk or the importer's limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sandlot.errors import RequestTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024
STREAMED = re.compile(r"^/v1/((sandboxes|volumes)/[^/]+/files|templates/(builds|imports))$")
"""Routes that take their body as a stream."""


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or STREAMED.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await _refuse(send, self.limit)
            return
        # Read whole (it is at most `limit` bytes) so that a body sent without a length,
        # chunk by chunk, is refused as plainly as one that declares it.
        held: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await _refuse(send, self.limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return held.pop(0) if held else await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"the request body is larger than {limit} bytes; upload files through the "
        "files route, which streams",
        details={"limit": limit},
    )


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"error": _too_large(limit).to_dict()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": RequestTooLargeError.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
