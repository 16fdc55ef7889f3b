"""The agent's wire protocol: frames, streams and credit-based flow control.

Shared by the agent and the host's `AgentClient`, so it is standard library only.

A frame is a fixed prefix, a JSON header and an optional binary payload:

    +----------------+-----------------+----------------------+-------------------+
    | header_len u32 | payload_len u32 | header (UTF-8 JSON)  | payload (bytes)   |
    +----------------+-----------------+----------------------+-------------------+

Every header is an object with `sid` (stream id, chosen by the client, never reused on a
connection) and `type`. One connection carries many streams at once:

    client -> agent   request   {"op", "args"}            opens stream `sid`
                      data      payload = upload chunk or stdin bytes
                      end       no more data (upload complete, stdin closed)
                      signal    {"signal": "SIGTERM"}     to the stream's process
                      cancel    the client abandons the stream
    agent -> client   event     {"event", ...}            e.g. a process started
                      data      payload = download chunk, or output with {"fd"}
                      response  {"result"}                closes the stream
                      error     {"error": {"code", "message", "details"}}  closes it
    both ways         credit    {"n"}                     the peer may send n more bytes

Flow control: each side may have at most `STREAM_WINDOW` payload bytes of `data` frames
outstanding per stream. The receiver grants credit back as it *consumes* data (writes it
to disk, hands it to the caller), so a slow consumer stalls its sender instead of making
either side buffer without bound.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections import deque
from typing import Any, Literal, NamedTuple, TypedDict

PROTOCOL_VERSION = 1

PREFIX = struct.Struct("!II")
MAX_HEADER_SIZE = 8 * 1024 * 1024
MAX_PAYLOAD_SIZE = 1024 * 1024
CHUNK_SIZE = 256 * 1024
STREAM_WINDOW = 4 * 1024 * 1024
CREDIT_BATCH = STREAM_WINDOW // 4
READ_BUFFER_LIMIT = 1024 * 1024
"""StreamReader limit for agent connections: large enough that a bulk frame is buffered whole."""

REQUEST = "request"
DATA = "data"
END = "end"
SIGNAL = "signal"
CANCEL = "cancel"
CREDIT = "credit"
EVENT = "event"
RESPONSE = "response"
ERROR = "error"

# Payloads at least this large are written separately instead of being copied once more.
_SEPARATE_PAYLOAD = 64 * 1024


class ProcessInfo(TypedDict):
    """A background process as the agent reports it (start, list, info, attach); the
    exit fields are None while it runs. The host checks every field of it (see
    `runtime/agent_client.py`): what the agent sends is the tenant's to forge."""

    process_id: str
    pid: int
    command: str | list[str]
    cwd: str
    pty: bool
    started_at: float
    status: Literal["running", "exited"]
    exit_code: int | None
    signal: str | None
    duration_ms: float | None
    timed_out: bool | None


PROCESS_INFO_KEYS = tuple(ProcessInfo.__annotations__)


class EntryInfo(TypedDict):
    """A file, directory or symlink as the agent reports it (list, stat, mkdir, write)."""

    name: str
    path: str
    type: Literal["file", "dir", "symlink"]
    size: int
    mode: int
    mtime: float
    symlink_target: str | None


ENTRY_INFO_KEYS = tuple(EntryInfo.__annotations__)


class ProtocolError(Exception):
    """A frame that breaks the protocol: oversize, truncated, or not the expected shape.

    The connection it came from cannot be trusted to stay in sync and is closed.
    """


class Frame(NamedTuple):
    header: dict[str, Any]
    payload: bytes

    @property
    def sid(self) -> int:
        sid: int = self.header["sid"]
        return sid

    @property
    def type(self) -> str:
        kind: str = self.header["type"]
        return kind


def _check_sizes(header_len: int, payload_len: int) -> None:
    if header_len > MAX_HEADER_SIZE:
        raise ProtocolError(f"frame header of {header_len} bytes exceeds {MAX_HEADER_SIZE}")
    if payload_len > MAX_PAYLOAD_SIZE:
        raise ProtocolError(f"frame payload of {payload_len} bytes exceeds {MAX_PAYLOAD_SIZE}")


def encode_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def encode_frame(header: dict[str, Any], payload: bytes | memoryview = b"") -> bytes:
    """One whole frame as bytes; raises ProtocolError if it would be oversize."""
    raw = encode_header(header)
    _check_sizes(len(raw), len(payload))
    return PREFIX.pack(len(raw), len(payload)) + raw + payload


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: how a name that is not UTF-8 (a file called
b"a\\xff") arrives once Python has decoded it with surrogateescape."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: Any) -> Any:
    """`value` with each lone surrogate replaced by U+FFFD: a str holding one cannot be
    encoded as UTF-8, so it would fail every response it reached."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def decode_header(raw: bytes) -> dict[str, Any]:
    """Parse and validate a frame header; every string in it is valid Unicode."""
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame header is not valid JSON: {exc}") from None
    if b"\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        header = _without_surrogates(header)
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    sid = header.get("sid")
    if not isinstance(sid, int) or isinstance(sid, bool) or sid < 0:
        raise ProtocolError("frame header lacks a stream id (sid: non-negative int)")
    if not isinstance(header.get("type"), str):
        raise ProtocolError("frame header lacks a type")
    return header


def decode_frame(buffer: bytes | bytearray | memoryview) -> tuple[Frame, int] | None:
    """Decode the first frame of `buffer`: (frame, bytes used), or None if it is incomplete."""
    view = memoryview(buffer)
    if len(view) < PREFIX.size:
        return None
    header_len, payload_len = PREFIX.unpack_from(view)
    _check_sizes(header_len, payload_len)
    end = PREFIX.size + header_len + payload_len
    if len(view) < end:
        return None
    header = decode_header(bytes(view[PREFIX.size : PREFIX.size + header_len]))
    payload = bytes(view[PREFIX.size + header_len : end])
    return Frame(header, payload), end


def credit_of(frame: Frame) -> int:
    """The bytes a credit frame grants."""
    n = frame.header.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ProtocolError("credit frame without a non-negative byte count (n)")
    return n


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            decoded = decode_frame(self._buffer)
            if decoded is None:
                return frames
            frame, used = decoded
            del self._buffer[:used]
            frames.append(frame)

    @property
    def pending(self) -> int:
        """Bytes held that do not yet make a whole frame."""
        return len(self._buffer)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame, or None if the peer closed the connection between frames."""
    sized = await read_sized_frame(reader)
    return None if sized is None else sized[0]


async def read_sized_frame(
    reader: asyncio.StreamReader, max_header: int = MAX_HEADER_SIZE
) -> tuple[Frame, int] | None:
    """The next frame and its size on the wire, refusing headers over `max_header`."""
    try:
        prefix = await reader.readexactly(PREFIX.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a frame prefix") from None
    header_len, payload_len = PREFIX.unpack(prefix)
    _check_sizes(header_len, payload_len)
    if header_len > max_header:
        raise ProtocolError(f"frame header of {header_len} bytes exceeds {max_header}")
    try:
        header = decode_header(await reader.readexactly(header_len))
        payload = await reader.readexactly(payload_len) if payload_len else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a frame") from None
    return Frame(header, payload), PREFIX.size + header_len + payload_len


class FrameWriter:
    """Writes frames to a StreamWriter; `send` never blocks, `drain` applies backpressure."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._transport = writer.transport

    @property
    def closed(self) -> bool:
        return self._transport.is_closing()

    def send(self, header: dict[str, Any], payload: bytes | memoryview = b"") -> None:
        """Queue one frame; raises ConnectionResetError once the connection is closing."""
        self.send_raw(encode_header(header), payload)

    def send_data(self, sid: int, payload: bytes | memoryview, fd: str | None = None) -> None:
        """The bulk-data fast path: a data frame without building a header dict."""
        if fd is None:
            raw = b'{"sid":%d,"type":"data"}' % sid
        else:
            raw = b'{"sid":%d,"type":"data","fd":"%s"}' % (sid, fd.encode())
        self.send_raw(raw, payload)

    def send_raw(self, raw_header: bytes, payload: bytes | memoryview = b"") -> None:
        if self._transport.is_closing():
            raise ConnectionResetError("agent connection is closed")
        _check_sizes(len(raw_header), len(payload))
        prefix = PREFIX.pack(len(raw_header), len(payload)) + raw_header
        if len(payload) >= _SEPARATE_PAYLOAD:
            self._transport.write(prefix)
            self._transport.write(payload)
        else:
            self._transport.write(prefix + payload if payload else prefix)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._transport.close()


class SendWindow:
    """The sender's side of one stream's flow control: how many bytes it may still send.

    Sending is allowed while credit is positive, so credit can dip below zero by at most
    one chunk; the receiver's ReceiveWindow tolerates exactly that.
    """

    def __init__(self, size: int = STREAM_WINDOW) -> None:
        self.credit = size
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def consume(self, n: int) -> None:
        self.credit -= n

    def grant(self, n: int) -> None:
        self.credit += n
        if self.credit > 0:
            self._wake()

    def abort(self, error: BaseException) -> None:
        """Fail current and future waits: the stream or the connection is gone."""
        self._error = error
        self._wake()

    async def wait(self) -> None:
        """Return once sending is allowed; raises the abort error if the stream is gone."""
        while True:
            if self._error is not None:
                raise self._error
            if self.credit > 0:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class ReceiveWindow:
    """The receiver's side: counts what arrived and what was consumed, batches credit."""

    def __init__(self, size: int = STREAM_WINDOW, batch: int = CREDIT_BATCH) -> None:
        self._limit = size + MAX_PAYLOAD_SIZE
        self._batch = batch
        self.outstanding = 0
        self._ungranted = 0

    def received(self, n: int) -> None:
        self.outstanding += n
        if self.outstanding > self._limit:
            raise ProtocolError(f"peer sent {self.outstanding} bytes past its stream window")

    def consumed(self, n: int) -> int:
        """Record `n` bytes consumed; returns the credit to grant now (0 to wait for more)."""
        self.outstanding -= n
        self._ungranted += n
        if self._ungranted < self._batch:
            return 0
        grant, self._ungranted = self._ungranted, 0
        return grant


class Inbox:
    """The frames of one stream, waiting for the task that handles it.

    Bounded in bytes when given a `limit` (each frame counted at its size on the wire):
    a peer that sends faster than this side consumes, on frames that credit does not
    cover (events, answers to nothing), breaks the protocol instead of growing memory.
    `shared`, if given, is a second bound all the streams of one connection draw on.
    """

    def __init__(self, limit: int | None = None, shared: QueueBudget | None = None) -> None:
        self._frames: deque[tuple[Frame, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._limit = limit
        self._shared = shared
        self.queued = 0

    def put(self, frame: Frame, size: int = 0) -> None:
        if self._limit is not None and self.queued + size > self._limit:
            raise ProtocolError(
                f"stream {frame.sid}: more than {self._limit} bytes sent and not yet read"
            )
        if self._shared is not None:
            self._shared.take(size)
        self.queued += size
        self._frames.append((frame, size))
        self._wake()

    def close(self, error: BaseException) -> None:
        """After the queued frames, `get` raises `error`."""
        self._error = error
        self._wake()

    def pop_all(self) -> list[Frame]:
        frames = [frame for frame, _ in self._frames]
        self._release(sum(size for _, size in self._frames))
        self._frames.clear()
        return frames

    async def get(self) -> Frame:
        while not self._frames:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame, size = self._frames.popleft()
        self._release(size)
        return frame

    def _release(self, size: int) -> None:
        self.queued -= size
        if self._shared is not None:
            self._shared.give(size)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class QueueBudget:
    """Bytes all the inboxes of one connection may hold together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise ProtocolError(f"more than {self.limit} bytes sent and not yet read")
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n
