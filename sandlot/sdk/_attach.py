"""The attach protocol: the WebSocket messages between a client and one process.

Pure encoding and decoding, no I/O. From the server, a binary message is output whose
first byte names the stream (1 stdout, 2 stderr, 3 pty); a text message is JSON
control: `attached` first, `exit` last, `error` when something failed. To the server,
a binary message is stdin and a text message is JSON control: `eof`, `signal`,
`resize`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from sandlot.errors import InternalError, InvalidConfigError, SandlotError, error_from_payload
from sandlot.sdk._models import OutputChunk, ProcessInfo, StreamName

STREAM_BY_CODE: dict[int, StreamName] = {1: "stdout", 2: "stderr", 3: "pty"}
CODE_BY_STREAM: dict[StreamName, int] = {name: code for code, name in STREAM_BY_CODE.items()}
MAX_PTY_SIDE = 1000


@dataclass(frozen=True)
class Attached:
    """The server's greeting: the process as it stands, and the scrollback bytes lost
    before the replay that follows."""

    process: ProcessInfo
    dropped_bytes: int


@dataclass(frozen=True)
class Exited:
    exit_code: int | None
    signal: str | None
    duration_ms: float
    timed_out: bool


@dataclass(frozen=True)
class Failed:
    error: SandlotError


ServerMessage = OutputChunk | Attached | Exited | Failed


def websocket_url(api_url: str, path: str) -> str:
    """`path` on the server at `api_url`, with http(s) turned into ws(s)."""
    parts = urlsplit(api_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise InvalidConfigError(f"cannot attach through {api_url!r}: expected an http(s) URL")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def attach_path(sandbox_id: str, process_id: str) -> str:
    return (
        f"/v1/sandboxes/{quote(sandbox_id, safe='')}/processes/{quote(process_id, safe='')}/attach"
    )


def decode(message: str | bytes) -> ServerMessage | None:
    """What one message from the server says; `None` for kinds this SDK does not know."""
    if isinstance(message, bytes | bytearray | memoryview):
        raw = bytes(message)
        stream = STREAM_BY_CODE.get(raw[0]) if raw else None
        return None if stream is None else OutputChunk(stream, raw[1:])
    try:
        body = json.loads(message)
        kind = body.get("type")
        if kind == "attached":
            return Attached(
                ProcessInfo.model_validate(body["process"]), int(body.get("droppedBytes") or 0)
            )
        if kind == "exit":
            return Exited(
                exit_code=body.get("exitCode"),
                signal=body.get("signal"),
                duration_ms=float(body.get("durationMs") or 0.0),
                timed_out=bool(body.get("timedOut")),
            )
        if kind == "error":
            return Failed(_error_of(body.get("error")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # ValidationError too
        return Failed(InternalError(f"malformed message on the attachment: {exc}"))
    return None


def _error_of(payload: Any) -> SandlotError:
    if isinstance(payload, dict):
        return error_from_payload(payload)
    return InternalError(f"the attachment failed without a reason: {payload!r}")


def stdin_message(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def eof_message() -> str:
    return json.dumps({"type": "eof"})


def signal_message(signal: str) -> str:
    return json.dumps({"type": "signal", "signal": signal})


def resize_message(cols: int, rows: int) -> str:
    for name, value in (("cols", cols), ("rows", rows)):
        if not 1 <= value <= MAX_PTY_SIDE:
            raise InvalidConfigError(f"{name} must be between 1 and {MAX_PTY_SIDE}, got {value}")
    return json.dumps({"type": "resize", "cols": cols, "rows": rows})


def output_message(stream: StreamName, data: bytes) -> bytes:
    """What the server sends for output; the inverse of `decode` for binary messages."""
    return bytes([CODE_BY_STREAM[stream]]) + data
