"""The host's side of the agent protocol: one multiplexed connection per sandbox.

Any number of callers share one `AgentClient`; each call is its own stream on the
connection (see `sandlot.agent.protocol`). Agent errors come back as the matching
`sandlot.errors` classes; a connection that drops fails every pending call with
`SandboxUnavailableError` at once.

    client = await AgentClient.connect(runtime.agent_endpoint(sandbox_id))
    result = await client.exec("make test", cwd="/workspace", timeout=60)
    await client.write_file("/workspace/data.bin", chunks())
    async for chunk in client.read_file("/workspace/out.bin"): ...

Background processes belong to the agent, not to a connection: start one, attach (from
this or any later connection) to replay its scrollback and follow it, detach, re-attach.

    info = await client.start_process("npm run dev", pty=(120, 40))
    attachment = await client.attach(info["process_id"])
    async for fd, data in attachment: ...
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sandlot.agent.protocol import (
    CANCEL,
    CHUNK_SIZE,
    CREDIT,
    DATA,
    END,
    ENTRY_INFO_KEYS,
    ERROR,
    EVENT,
    MAX_PAYLOAD_SIZE,
    PROCESS_INFO_KEYS,
    READ_BUFFER_LIMIT,
    REQUEST,
    RESPONSE,
    SIGNAL,
    STREAM_WINDOW,
    EntryInfo,
    Frame,
    FrameWriter,
    Inbox,
    ProcessInfo,
    ProtocolError,
    QueueBudget,
    ReceiveWindow,
    SendWindow,
    credit_of,
    read_sized_frame,
)
from sandlot.errors import (
    CommandTimeoutError,
    InternalError,
    InvalidConfigError,
    InvalidStateError,
    SandboxUnavailableError,
    SandlotError,
    error_from_payload,
)
from sandlot.runtime.base import AgentEndpoint

OutputCallback = Callable[[str, bytes], Awaitable[None] | None]
"""Called with ("stdout" | "stderr", data) as output arrives; may be a coroutine function."""

T = TypeVar("T")
log = logging.getLogger(__name__)


QUIESCE_TIMEOUT = 2.0
CALL_TIMEOUT = 30.0
"""Seconds the agent has to answer a request (a file operation, a process list, a
start): the agent is the tenant's to replace, and a call it never answers must not
hold whoever made it (a request handler, the supervisor, a destroy) for ever."""
EXEC_GRACE = 5.0
"""Seconds past a command's own timeout before the host stops waiting for its end:
the agent enforces the timeout, the host makes sure of it."""
STREAM_QUEUE_LIMIT = STREAM_WINDOW + 4 * MAX_PAYLOAD_SIZE
"""Bytes of frames one stream may hold unread: its data window and a few answers."""
CONNECTION_QUEUE_LIMIT = 64 * 1024 * 1024
"""Bytes of frames all the streams of one agent connection may hold unread."""
AGENT_HEADER_LIMIT = 4 * 1024 * 1024
"""Largest frame header accepted from an agent (a directory listing is the largest
honest one)."""
CLOSE_GRACE = 1.0
"""Seconds a closing connection may spend flushing frames to the agent before it is
cut: an agent that stops reading would otherwise hold the closer (a destroy) for ever."""
_RETRY_DELAY = 0.002
_PATIENT_AFTER = 0.5
"""Poll every _RETRY_DELAY while an agent may still be starting, then back off."""
_MAX_RETRY_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int | None
    """None when a signal ended the process."""
    signal: str | None
    """The name of the signal that ended the process, e.g. "SIGKILL"."""
    duration_ms: float
    timed_out: bool
    truncated: bool = False
    """Output passed the collection limit; stdout and stderr hold the last bytes of each."""


class OutputTail:
    """The last `limit` bytes of a stream: bounded memory whatever a command prints."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.dropped = False

    def append(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.limit is None:
            return
        while self.size > self.limit:
            self.dropped = True
            excess = self.size - self.limit
            head = self.chunks[0]
            if len(head) <= excess:
                self.chunks.popleft()
                self.size -= len(head)
            else:
                self.chunks[0] = head[excess:]
                self.size -= excess

    def value(self) -> bytes:
        return b"".join(self.chunks)


@dataclass(frozen=True)
class LogBatch:
    """System log lines as the agent keeps them (`seq`, `at` in Unix seconds, `severity`,
    `facility`, `tag`, `line`), and how many lines before them were lost."""

    lines: list[dict[str, Any]]
    missed: int


class _Stream:
    def __init__(self, sid: int, op: str, budget: QueueBudget) -> None:
        self.sid = sid
        self.op = op
        self.inbox = Inbox(STREAM_QUEUE_LIMIT, budget)
        self.send_window = SendWindow()
        self.receive_window = ReceiveWindow()
        self.done = False
        """The agent ended the stream (response or error)."""


class AgentProcess:
    """A process the agent started for this client: feed it, signal it, wait for it.

    `wait` must be running (or be called soon) for output to flow: the agent stops
    reading the process's pipes when this side does not consume its output.
    """

    def __init__(
        self,
        client: AgentClient,
        stream: _Stream,
        *,
        process_id: str,
        pid: int,
        on_output: OutputCallback | None,
        max_output: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self._client = client
        self._stream = stream
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._deadline = None if timeout is None else self._started + timeout + EXEC_GRACE
        self._on_output = on_output
        self._max_output = max_output
        self.process_id = process_id
        self.pid = pid
        """The pid inside the sandbox's pid namespace."""

    async def send_stdin(self, data: bytes | bytearray | memoryview) -> None:
        await self._client._send_bytes(self._stream, data)

    async def close_stdin(self) -> None:
        self._client._send({"sid": self._stream.sid, "type": END})

    async def signal(self, sig: str | int) -> None:
        """Send a signal ("SIGTERM", "TERM" or a number) to the process."""
        self._client._send({"sid": self._stream.sid, "type": SIGNAL, "signal": sig})

    async def wait(self) -> ExecResult:
        """Collect output until the process exits. Cancelling this kills the process.

        With a timeout, the host stops waiting `EXEC_GRACE` seconds after it whatever the
        agent does (an agent root replaced may never answer), asks for the process to be
        killed and reports it timed out."""
        client, stream = self._client, self._stream
        stdout, stderr = OutputTail(self._max_output), OutputTail(self._max_output)
        try:
            if self._deadline is None:
                return await self._collect(stdout, stderr)
            try:
                async with asyncio.timeout_at(self._deadline):
                    return await self._collect(stdout, stderr)
            except TimeoutError:
                with contextlib.suppress(SandlotError):
                    await self.signal("SIGKILL")
                return ExecResult(
                    stdout.value(), stderr.value(), None, "SIGKILL", self._elapsed_ms(), True
                )
        finally:
            client._abandon(stream)

    def _elapsed_ms(self) -> float:
        return (asyncio.get_running_loop().time() - self._started) * 1000

    async def _collect(self, stdout: OutputTail, stderr: OutputTail) -> ExecResult:
        client, stream = self._client, self._stream
        while True:
            frame = await client._next(stream)
            if frame.type == DATA:
                fd = str(frame.header.get("fd", "stdout"))
                (stderr if fd == "stderr" else stdout).append(frame.payload)
                if self._on_output is not None:
                    pending = self._on_output(fd, frame.payload)
                    if inspect.isawaitable(pending):
                        await pending
                client._consumed(stream, len(frame.payload))
            elif frame.type == RESPONSE:
                return _exec_result(frame.header.get("result"), stdout, stderr)


class _Detached(Exception):
    """Ends an attachment's iteration after `detach`."""


class Attachment:
    """A client's view of a background process: its scrollback, then its live output.

    Iterate for ("stdout" | "stderr" | "pty", data) until the process exits (then
    `result` is set) or `detach` is called. Consuming the output is what lets it flow:
    the agent stops reading the process's output while this side does not keep up.
    `result` carries the exit only; its stdout and stderr are empty (the output was
    streamed).
    """

    def __init__(
        self,
        client: AgentClient,
        stream: _Stream,
        *,
        info: ProcessInfo,
        dropped_bytes: int,
    ) -> None:
        self._client = client
        self._stream = stream
        self.process_id: str = info["process_id"]
        self.info = info
        """The ProcessInfo at attach time; the final one once the exit arrived."""
        self.dropped_bytes = dropped_bytes
        """Scrollback bytes lost before the replay began."""
        self.result: ExecResult | None = None
        self._iterator: AsyncIterator[tuple[str, bytes]] | None = None
        self._detached = False

    def __aiter__(self) -> AsyncIterator[tuple[str, bytes]]:
        if self._iterator is None:
            self._iterator = self._output()
        return self._iterator

    async def send_stdin(self, data: bytes | bytearray | memoryview) -> None:
        self._check_attached()
        await self._client._send_bytes(self._stream, data)

    async def close_stdin(self) -> None:
        """Close the process's stdin; on a terminal this sends the end-of-file character (^D)."""
        self._check_attached()
        if not self._stream.done:
            self._client._send({"sid": self._stream.sid, "type": END})

    async def signal(self, sig: str | int) -> None:
        """Signal the process's group ("SIGTERM", "TERM" or a number)."""
        await self._client.signal_process(self.process_id, sig)

    async def resize(self, cols: int, rows: int) -> None:
        await self._client.resize(self.process_id, cols, rows)

    async def detach(self) -> None:
        """Stop following the process, which keeps running; the iteration ends."""
        if self._detached:
            return
        self._detached = True
        self._client._abandon(self._stream)
        self._stream.inbox.pop_all()
        self._stream.inbox.close(_Detached())

    def _check_attached(self) -> None:
        if self._detached:
            raise InvalidStateError(f"detached from process {self.process_id}")

    async def _output(self) -> AsyncIterator[tuple[str, bytes]]:
        client, stream = self._client, self._stream
        try:
            while not self._detached:
                try:
                    frame = await client._next(stream)
                except _Detached:
                    return
                if frame.type == DATA:
                    yield str(frame.header.get("fd", "stdout")), frame.payload
                    client._consumed(stream, len(frame.payload))
                elif frame.type == RESPONSE:
                    self.info = _process_info(frame.header.get("result"), "attach")
                    self.result = _exec_result(self.info, OutputTail(0), OutputTail(0))
                    return
        finally:
            client._abandon(stream)


class TcpConnection:
    """A TCP connection the agent opened inside the sandbox, relayed over one stream.

    Iterate for the bytes the peer sends until it half-closes; `send` and `close_write`
    go the other way; `close` drops the connection whatever its state.
    """

    def __init__(self, client: AgentClient, stream: _Stream, address: str) -> None:
        self._client = client
        self._stream = stream
        self.address = address
        """The address inside the sandbox the connection reached."""

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await self._client._send_bytes(self._stream, data)

    async def close_write(self) -> None:
        if not self._stream.done:
            self._client._send({"sid": self._stream.sid, "type": END})

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._received()

    async def close(self) -> None:
        self._client._abandon(self._stream)

    async def _received(self) -> AsyncIterator[bytes]:
        client, stream = self._client, self._stream
        while True:
            frame = await client._next(stream)
            if frame.type == DATA:
                yield frame.payload
                client._consumed(stream, len(frame.payload))
            elif frame.type == RESPONSE or frame.header.get("event") == "eof":
                return


class AgentClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open connection; use `connect` instead."""
        self._reader = reader
        self._writer = writer
        self._out = FrameWriter(writer)
        self._streams: dict[int, _Stream] = {}
        self._budget = QueueBudget(CONNECTION_QUEUE_LIMIT)
        self._sids = itertools.count(1)
        self._closed_reason: str | None = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls, endpoint: AgentEndpoint | str | Path, timeout: float = 10.0
    ) -> AgentClient:
        """Connect once the agent accepts and answers a ping, retrying until `timeout`.

        Given an `AgentEndpoint` with a listener, a socket made by any other process is
        refused before a byte is sent: whatever root inside binds there is not the agent."""
        if not isinstance(endpoint, AgentEndpoint):
            endpoint = AgentEndpoint(Path(endpoint))
        socket_path = endpoint.path
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        delay = _RETRY_DELAY
        last_error: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.info("agent at %s did not answer: %r", socket_path, last_error)
                raise SandboxUnavailableError(  # tenants never see the host's paths
                    f"the sandbox's agent did not answer within {timeout:g}s: "
                    f"{_without_path(last_error)}"
                )
            client: AgentClient | None = None
            try:
                async with asyncio.timeout(remaining):
                    reader, writer = await _open_socket_no_follow(socket_path)
                    if endpoint.listener is not None:
                        _check_listener(writer, endpoint.listener)
                    client = cls(reader, writer)
                    await client.ping()
                return client
            except (OSError, SandboxUnavailableError) as exc:  # TimeoutError is an OSError
                last_error = exc
                if client is not None:
                    await client.close()
            now = loop.time()
            await asyncio.sleep(min(delay, max(0.0, deadline - now)))
            if now - started > _PATIENT_AFTER:
                delay = min(delay * 2, _MAX_RETRY_DELAY)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def close(self) -> None:
        self._shutdown("agent connection closed by the client")
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- operations -------------------------------------------------------------------

    async def ping(self) -> dict[str, Any]:
        """The agent's version, protocol version, uptime (seconds) and pid."""
        return _expect(dict, await self._call("ping", {}), "ping")

    async def quiesce(self) -> None:
        """Have the agent stop listening and drop its connections, this one included,
        before the sandbox is checkpointed; closes this client."""
        await self._call("quiesce", {})
        # The agent closes its side once it has stopped listening: waiting for that end
        # of stream means no socket of the agent's is left for CRIU to trip over.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader_task), QUIESCE_TIMEOUT)
        await self.close()

    async def spawn(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: bool = False,
        on_output: OutputCallback | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> AgentProcess:
        """Start a command (a string runs through bash, or sh) and return its handle.

        With `stdin` False the process reads /dev/null; otherwise feed it through
        `send_stdin` and `close_stdin`. `user` (NAME, UID, NAME:GROUP or UID:GID, looked
        up in the sandbox) runs it as that user instead of root, with that user's HOME,
        USER and LOGNAME unless `env` sets them.
        """
        args: dict[str, Any] = {
            "cwd": cwd,
            "env": env,
            "timeout": timeout,
            "stdin": stdin,
            "user": user,
        }
        if isinstance(command, str):
            args["cmd"] = command
        else:
            args["argv"] = list(command)
        stream = self._open("exec", args)
        try:
            frame = await self._next(stream, CALL_TIMEOUT)
        except BaseException:
            self._abandon(stream)
            raise
        if frame.type != EVENT or frame.header.get("event") != "started":
            self._abandon(stream)
            raise InternalError(f"agent answered exec with an unexpected {frame.type} frame")
        process_id, pid = frame.header.get("process_id"), frame.header.get("pid")
        if not isinstance(process_id, str) or not isinstance(pid, int):
            self._abandon(stream)
            raise InternalError("the agent reported a started process without its ids")
        return AgentProcess(
            self,
            stream,
            process_id=process_id,
            pid=pid,
            on_output=on_output,
            max_output=max_output,
            timeout=timeout,
        )

    async def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_output: OutputCallback | None = None,
        max_output: int | None = None,
        user: str | None = None,
    ) -> ExecResult:
        """Run a command to completion; a timeout kills its process group (timed_out=True).

        `max_output` bounds what is kept of each of stdout and stderr (the last bytes);
        `user` is as for `spawn`.
        """
        proc = await self.spawn(
            command,
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=stdin is not None,
            on_output=on_output,
            max_output=max_output,
            user=user,
        )
        if stdin is None:
            return await proc.wait()
        # Feed stdin while collecting output: a process that writes before it reads
        # would otherwise stall on a full pipe while we wait for stdin credit.
        feeder = asyncio.get_running_loop().create_task(self._feed(proc, stdin))
        try:
            return await proc.wait()
        finally:
            feeder.cancel()

    async def start_process(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        pty: tuple[int, int] | None = None,
        max_run_after_disconnect: float | None = None,
        scrollback: int | None = None,
        hold_until_attach: float | None = None,
        user: str | None = None,
    ) -> ProcessInfo:
        """Start a background process that outlives this connection; returns its ProcessInfo.

        `pty` (cols, rows) runs it on a terminal (one output stream, "pty"; TERM defaults
        to xterm-256color). `max_run_after_disconnect` kills its group that many seconds
        after the last attached client left (or after the start, if nobody attaches).
        `scrollback` bounds the output kept for replay (default 1 MiB). Output made
        before the first attach is replayed by it, within that bound; with
        `hold_until_attach` (seconds) the process's output waits for that first attach
        instead, so none of it scrolls out. `user` is as for `spawn`.
        """
        args: dict[str, Any] = {
            "cwd": cwd,
            "env": env,
            "timeout": timeout,
            "pty": None if pty is None else [pty[0], pty[1]],
            "max_run_after_disconnect": max_run_after_disconnect,
            "scrollback": scrollback,
            "hold_until_attach": hold_until_attach,
            "user": user,
        }
        if isinstance(command, str):
            args["cmd"] = command
        else:
            args["argv"] = list(command)
        return _process_info(await self._call("start", args), "start")

    async def list_processes(self, include_exited: bool = False) -> list[ProcessInfo]:
        """Background processes, oldest first; with `include_exited`, also the retained
        exited ones (kept at least 5 minutes, or until 100 newer ones exited)."""
        result = await self._call("list_processes", {"include_exited": include_exited})
        return [_process_info(item, "list_processes") for item in _expect(list, result, "list")]

    async def process_info(self, process_id: str) -> ProcessInfo:
        result = await self._call("process_info", {"process_id": process_id})
        return _process_info(result, "process_info")

    async def signal_process(self, process_id: str, sig: str | int) -> None:
        """Signal the process's whole group: "SIGTERM", "TERM" or a number."""
        await self._call("signal", {"process_id": process_id, "signal": sig})

    async def resize(self, process_id: str, cols: int, rows: int) -> None:
        """Resize a process's terminal (the kernel sends it SIGWINCH)."""
        await self._call("resize", {"process_id": process_id, "cols": cols, "rows": rows})

    async def attach(self, process_id: str) -> Attachment:
        """Follow a background process: its scrollback first, then live output and exit.

        Any number of clients may attach to one process at once. The process runs on when
        the attachment detaches or this connection drops.
        """
        stream = self._open("attach", {"process_id": process_id})
        try:
            frame = await self._next(stream, CALL_TIMEOUT)
            if frame.type != EVENT or frame.header.get("event") != "attached":
                raise InternalError(f"agent answered attach with an unexpected {frame.type} frame")
            info = _process_info(frame.header.get("info"), "attach")
            dropped = frame.header.get("dropped_bytes")
            if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
                raise InternalError("the agent reported an attachment without dropped_bytes")
        except BaseException:
            self._abandon(stream)
            raise
        return Attachment(self, stream, info=info, dropped_bytes=dropped)

    async def open_tcp(self, host: str, port: int) -> TcpConnection:
        """Connect to `host:port` from inside the sandbox (its loopback or its own
        addresses only); raises ConnectFailedError if nothing accepts there."""
        stream = self._open("connect", {"host": host, "port": port})
        try:
            frame = await self._next(stream, CALL_TIMEOUT)
            address = frame.header.get("address")
            if frame.type != EVENT or frame.header.get("event") != "connected":
                raise InternalError(f"agent answered connect with an unexpected {frame.type} frame")
            if not isinstance(address, str):
                raise InternalError("the agent reported a connection without its address")
        except BaseException:
            self._abandon(stream)
            raise
        return TcpConnection(self, stream, address)

    def read_file(self, path: str) -> AsyncIterator[bytes]:
        """The file's content in chunks; a missing file raises before the first chunk."""
        return self._read_file(path)

    def follow_log(self) -> AsyncIterator[LogBatch]:
        """The sandbox's system log, from the first line no earlier follower took, in
        batches, until the connection drops (SandboxUnavailableError) or the caller stops
        iterating."""
        return self._follow_log()

    async def write_file(
        self,
        path: str,
        chunks: AsyncIterable[bytes] | bytes,
        *,
        mode: int | None = None,
    ) -> EntryInfo:
        """Write a file atomically (parents created; nothing left if the upload fails)."""
        stream = self._open("write_file", {"path": path, "mode": mode})
        loop = asyncio.get_running_loop()
        # The upload runs beside the wait for the answer, so that an agent error or a
        # dropped connection ends the call even while `chunks` is slow to produce.
        upload = loop.create_task(self._upload(stream, chunks))
        answer = loop.create_task(self._result(stream))
        try:
            await asyncio.wait((upload, answer), return_when=asyncio.FIRST_COMPLETED)
            if upload.done() and not answer.done():
                upload.result()  # raises what broke the upload
            return _entry_info(await answer, "write_file")
        finally:
            upload.cancel()
            answer.cancel()
            self._abandon(stream)

    async def list_dir(self, path: str, depth: int = 1) -> list[EntryInfo]:
        result = await self._call("list_dir", {"path": path, "depth": depth})
        return [_entry_info(item, "list_dir") for item in _expect(list, result, "list_dir")]

    async def stat(self, path: str) -> EntryInfo:
        return _entry_info(await self._call("stat", {"path": path}), "stat")

    async def mkdir(self, path: str, parents: bool = False) -> EntryInfo:
        result = await self._call("mkdir", {"path": path, "parents": parents})
        return _entry_info(result, "mkdir")

    async def remove(self, path: str, recursive: bool = False) -> None:
        await self._call("remove", {"path": path, "recursive": recursive})

    async def replace(self, path: str, old: str, new: str, count: int | None = None) -> int:
        """Replace `old` by `new`; returns the number replaced.

        `count` None: `old` must occur exactly once. -1: every occurrence. n: the first n.
        """
        args = {"path": path, "old": old, "new": new, "count": count}
        replaced = _expect(dict, await self._call("replace", args), "replace").get("replaced")
        return _expect(int, replaced, "replace")

    # -- streams ----------------------------------------------------------------------

    async def _read_file(self, path: str) -> AsyncIterator[bytes]:
        stream = self._open("read_file", {"path": path})
        try:
            while True:
                # Each chunk is a wait on the agent alone (credit is granted as chunks are
                # consumed), so each has the call deadline.
                frame = await self._next(stream, CALL_TIMEOUT)
                if frame.type == DATA:
                    yield frame.payload
                    self._consumed(stream, len(frame.payload))
                elif frame.type == RESPONSE:
                    return
        finally:
            self._abandon(stream)

    async def _follow_log(self) -> AsyncIterator[LogBatch]:
        stream = self._open("follow_log", {})
        try:
            while True:
                frame = await self._next(stream)
                lines, missed = frame.header.get("lines"), frame.header.get("missed", 0)
                if frame.type == RESPONSE:
                    return
                if frame.header.get("event") != "log" or not isinstance(lines, list):
                    raise InternalError(f"agent sent an unexpected {frame.type} in the log")
                yield LogBatch(lines, missed if _is_int(missed) else 0)
        finally:
            self._abandon(stream)

    async def _upload(self, stream: _Stream, chunks: AsyncIterable[bytes] | bytes) -> None:
        if isinstance(chunks, (bytes, bytearray, memoryview)):
            await self._send_bytes(stream, chunks)
        else:
            async for chunk in chunks:
                await self._send_bytes(stream, chunk)
        self._send({"sid": stream.sid, "type": END})

    async def _feed(self, proc: AgentProcess, data: bytes) -> None:
        try:
            if data:
                await proc.send_stdin(data)
            await proc.close_stdin()
        except SandlotError:
            pass  # the process ended or the connection dropped: `wait` reports it

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        stream = self._open(op, args)
        try:
            return await self._result(stream)
        finally:
            self._abandon(stream)

    async def _result(self, stream: _Stream) -> Any:
        while True:
            frame = await self._next(stream, CALL_TIMEOUT)
            if frame.type == RESPONSE:
                return frame.header.get("result")

    def _open(self, op: str, args: dict[str, Any]) -> _Stream:
        stream = _Stream(next(self._sids), op, self._budget)
        try:
            self._send({"sid": stream.sid, "type": REQUEST, "op": op, "args": args})
        except ProtocolError as exc:
            raise InvalidConfigError(f"{op} request too large: {exc}") from None
        self._streams[stream.sid] = stream
        return stream

    async def _next(self, stream: _Stream, timeout: float | None = None) -> Frame:
        """The stream's next frame; error frames are raised as their exception. With
        `timeout`, an agent that sends nothing for that long is a SandboxTimeoutError."""
        if timeout is None:
            frame = await stream.inbox.get()
        else:
            try:
                async with asyncio.timeout(timeout):
                    frame = await stream.inbox.get()
            except TimeoutError:
                raise CommandTimeoutError(
                    f"the sandbox's agent did not answer {stream.op} within {timeout:g} s",
                    details={"operation": stream.op, "timeout_s": timeout},
                ) from None
        if frame.type == ERROR:
            raise _error_of(frame)
        return frame

    def _abandon(self, stream: _Stream) -> None:
        """Forget a stream; tell the agent if it is still running there."""
        if stream.done:
            return
        stream.done = True
        if self._streams.pop(stream.sid, None) is not None and not self.closed:
            with contextlib.suppress(ConnectionError):
                self._out.send({"sid": stream.sid, "type": CANCEL})

    async def _send_bytes(self, stream: _Stream, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        # The transport may keep a reference to what it could not send yet; a caller's
        # mutable buffer (reused for the next chunk, say) must be copied first.
        immutable = isinstance(data, bytes)
        for start in range(0, len(view), CHUNK_SIZE):
            try:
                async with asyncio.timeout(CALL_TIMEOUT):
                    await stream.send_window.wait()
            except TimeoutError:
                raise CommandTimeoutError(
                    f"the sandbox's agent took no more data for {stream.op} within "
                    f"{CALL_TIMEOUT:g} s",
                    details={"operation": stream.op, "timeout_s": CALL_TIMEOUT},
                ) from None
            piece: bytes | memoryview = view[start : start + CHUNK_SIZE]
            if not immutable:
                piece = bytes(piece)
            try:
                self._out.send_data(stream.sid, piece)
            except ConnectionError:
                raise self._unavailable() from None
            stream.send_window.consume(len(piece))
            try:
                await self._out.drain()
            except ConnectionError:
                raise self._unavailable() from None

    def _send(self, header: dict[str, Any]) -> None:
        if self.closed:
            raise self._unavailable()
        try:
            self._out.send(header)
        except ConnectionError:
            raise self._unavailable() from None

    def _consumed(self, stream: _Stream, n: int) -> None:
        grant = stream.receive_window.consumed(n)
        if grant and not stream.done and not self.closed:
            with contextlib.suppress(ConnectionError):
                self._out.send({"sid": stream.sid, "type": CREDIT, "n": grant})

    def _unavailable(self) -> SandboxUnavailableError:
        return SandboxUnavailableError(self._closed_reason or "agent connection closed")

    # -- connection -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "the agent closed the connection"
        try:
            while True:
                sized = await read_sized_frame(self._reader, AGENT_HEADER_LIMIT)
                if sized is None:
                    break
                self._route(*sized)
        except ProtocolError as exc:
            reason = f"the agent broke the protocol: {exc}"
        except OSError as exc:
            reason = f"the agent connection failed: {exc}"
        except Exception as exc:
            reason = f"the agent connection failed: {exc!r}"
        finally:
            self._shutdown(reason)

    def _route(self, frame: Frame, size: int) -> None:
        stream = self._streams.get(frame.sid)
        if stream is None:
            return  # a stream this side already abandoned
        kind = frame.type
        if kind == CREDIT:
            stream.send_window.grant(credit_of(frame))
            return
        if kind == DATA:
            stream.receive_window.received(len(frame.payload))
        elif kind in (RESPONSE, ERROR):
            # The stream is over: stop whoever is still sending on it.
            stream.done = True
            del self._streams[frame.sid]
            if kind == ERROR:
                stream.send_window.abort(_error_of(frame))
            else:
                stream.send_window.abort(InvalidStateError("the agent already ended this stream"))
        stream.inbox.put(frame, size)

    def _shutdown(self, reason: str) -> None:
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        self._out.close()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.inbox.close(SandboxUnavailableError(reason))
            stream.send_window.abort(SandboxUnavailableError(reason))


def _error_of(frame: Frame) -> SandlotError:
    error = frame.header.get("error")
    if not isinstance(error, dict):
        return InternalError("the agent answered with a malformed error")
    return error_from_payload(error)


def _exec_result(result: object, stdout: OutputTail, stderr: OutputTail) -> ExecResult:
    """Check the agent's exit report: the host trusts nothing from inside a sandbox."""
    if not isinstance(result, dict):
        raise InternalError("the agent answered exec with a malformed result")
    exit_code, sig = result.get("exit_code"), result.get("signal")
    duration, timed_out = result.get("duration_ms"), result.get("timed_out")
    if (
        not (exit_code is None or (isinstance(exit_code, int) and not isinstance(exit_code, bool)))
        or not (sig is None or isinstance(sig, str))
        or not isinstance(duration, (int, float))
        or not isinstance(timed_out, bool)
    ):
        raise InternalError(f"the agent answered exec with a malformed result: {result!r:.200}")
    return ExecResult(
        stdout=stdout.value(),
        stderr=stderr.value(),
        exit_code=exit_code,
        signal=sig,
        duration_ms=float(duration),
        timed_out=timed_out,
        truncated=stdout.dropped or stderr.dropped,
    )


def _process_info(result: object, op: str) -> ProcessInfo:
    """Check a ProcessInfo from the agent and keep exactly its documented keys."""
    if not isinstance(result, dict) or not all(key in result for key in PROCESS_INFO_KEYS):
        raise InternalError(f"the agent answered {op} with a malformed process info")
    info = {key: result[key] for key in PROCESS_INFO_KEYS}
    command = info["command"]
    if (
        not isinstance(info["process_id"], str)
        or not _is_int(info["pid"])
        or not (
            isinstance(command, str)
            or (isinstance(command, list) and all(isinstance(a, str) for a in command))
        )
        or not isinstance(info["cwd"], str)
        or not isinstance(info["pty"], bool)
        or not isinstance(info["started_at"], (int, float))
        or info["status"] not in ("running", "exited")
        or not (info["exit_code"] is None or _is_int(info["exit_code"]))
        or not (info["signal"] is None or isinstance(info["signal"], str))
        or not (info["duration_ms"] is None or isinstance(info["duration_ms"], (int, float)))
        or not (info["timed_out"] is None or isinstance(info["timed_out"], bool))
    ):
        raise InternalError(f"the agent answered {op} with a malformed process info")
    info["started_at"] = float(info["started_at"])
    return cast(ProcessInfo, info)


def _entry_info(result: object, op: str) -> EntryInfo:
    """Check an EntryInfo from the agent and keep exactly its documented keys."""
    if not isinstance(result, dict) or not all(key in result for key in ENTRY_INFO_KEYS):
        raise InternalError(f"the agent answered {op} with a malformed file entry")
    entry = {key: result[key] for key in ENTRY_INFO_KEYS}
    target = entry["symlink_target"]
    if (
        not isinstance(entry["name"], str)
        or not isinstance(entry["path"], str)
        or entry["type"] not in ("file", "dir", "symlink")
        or not _is_int(entry["size"])
        or not _is_int(entry["mode"])
        or not isinstance(entry["mtime"], (int, float))
        or not (target is None or isinstance(target, str))
    ):
        raise InternalError(f"the agent answered {op} with a malformed file entry")
    entry["mtime"] = float(entry["mtime"])
    return cast(EntryInfo, entry)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect(kind: type[T], result: object, op: str) -> T:
    if not isinstance(result, kind):
        raise InternalError(f"the agent answered {op} with a malformed result")
    return result


def _without_path(error: BaseException | None) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # what went wrong, without the filename it names
    return str(error)


_PEERCRED = struct.Struct("3i")


def _check_listener(writer: asyncio.StreamWriter, expected: int) -> None:
    """Refuse (and close) a connection whose listening socket another process made."""
    sock = writer.get_extra_info("socket")
    pid, _uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    if pid != expected:
        writer.close()
        raise ConnectionRefusedError("the sandbox's agent socket is not held by its agent")


async def _open_socket_no_follow(
    path: Path,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the socket at `path` itself, never to what a symlink there points at.

    The socket's directory is writable from inside the sandbox, so its root could swap
    the socket for a symlink to a host socket and have the server talk to that. Opening
    the path with O_NOFOLLOW and connecting through the resulting descriptor pins the
    connection to the inode found there, which must be a socket.
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise ConnectionRefusedError(f"{path} is not a socket")
        return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}", limit=READ_BUFFER_LIMIT)
    finally:
        os.close(fd)
