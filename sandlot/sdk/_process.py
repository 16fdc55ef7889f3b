"""Processes started through Sandlot, and the handles that follow one of them.

A handle is one attachment (a WebSocket): the server replays the process's scrollback,
then sends live output until the process exits. The socket is read only while the
caller iterates `stream()` or waits in `wait()`, so output the caller does not consume
stays in the server's scrollback instead of piling up here.

`_HandleBase` holds everything the blocking and asyncio handles share: what a message
means, the output kept for the result, the line callbacks, the result itself. The
twins only do the socket I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter
from websockets.exceptions import ConnectionClosed

from sandlot.errors import CommandTimeoutError, InternalError, InvalidStateError, SandlotError
from sandlot.sdk._attach import (
    Attached,
    Exited,
    Failed,
    attach_path,
    decode,
    eof_message,
    resize_message,
    stdin_message,
)
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import CommandResult, OutputChunk, ProcessInfo, StreamName
from sandlot.sdk._output import LineSplitter, OutputTail

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection as AsyncWebSocket
    from websockets.sync.client import ClientConnection as SyncWebSocket

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)
SocketT = TypeVar("SocketT", "SyncWebSocket", "AsyncWebSocket")

LineCallback = Callable[[str], object]
OutputCallback = Callable[[bytes], object]
DEFAULT_SIGNAL = "SIGKILL"

_PROCESSES = TypeAdapter(list[ProcessInfo])
_Pending = list[tuple[Callable[[Any], object], object]]


def wire_command(command: str | Sequence[str]) -> str | list[str]:
    return command if isinstance(command, str) else list(command)


def start_call(
    sandbox_id: str,
    command: str | Sequence[str] | None,
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    pty: tuple[int, int] | None = None,
    max_run_after_disconnect: float | None = None,
    user: str | None = None,
) -> Call[ProcessInfo]:
    return Call(
        "POST",
        sandbox_path(sandbox_id, "/processes"),
        parse=ProcessInfo.model_validate,
        json={
            "command": None if command is None else wire_command(command),
            "cwd": cwd,
            "env": dict(env or {}),
            "timeout": timeout,
            "pty": None if pty is None else {"cols": pty[0], "rows": pty[1]},
            "maxRunAfterDisconnect": max_run_after_disconnect,
            **user_field(user),
        },
    )


def user_field(user: str | None) -> dict[str, str]:
    """`user` for a request body, left out when unset so that servers from before it
    (which refuse unknown fields) still take the request."""
    return {} if user is None else {"user": user}


def list_call(sandbox_id: str, include_exited: bool) -> Call[list[ProcessInfo]]:
    params = {"all": True} if include_exited else {}
    return Call(
        "GET",
        sandbox_path(sandbox_id, "/processes"),
        parse=_PROCESSES.validate_python,
        params=params,
    )


def get_call(sandbox_id: str, process_id: str) -> Call[ProcessInfo]:
    return Call("GET", _process_path(sandbox_id, process_id), parse=ProcessInfo.model_validate)


def signal_call(sandbox_id: str, process_id: str, signal: str) -> Call[ProcessInfo]:
    return Call(
        "POST",
        _process_path(sandbox_id, process_id, "/signal"),
        parse=ProcessInfo.model_validate,
        json={"signal": signal},
    )


def _process_path(sandbox_id: str, process_id: str, suffix: str = "") -> str:
    return sandbox_path(sandbox_id, f"/processes/{quote(process_id, safe='')}{suffix}")


def greeting(message: str | bytes) -> Attached:
    """The `attached` message that opens an attachment, or the error sent instead."""
    decoded = decode(message)
    if isinstance(decoded, Attached):
        return decoded
    if isinstance(decoded, Failed):
        raise decoded.error
    raise InternalError(f"expected the attachment's greeting, got {message!r:.200}")


class _HandleBase(Generic[TransportT, SocketT]):
    def __init__(
        self,
        sandbox_id: str,
        transport: TransportT,
        socket: SocketT,
        attached: Attached,
        *,
        on_stdout: LineCallback | None = None,
        on_stderr: LineCallback | None = None,
        on_output: OutputCallback | None = None,
    ) -> None:
        self._sandbox_id = sandbox_id
        self._transport: TransportT = transport
        self._socket: SocketT = socket
        self._info = attached.process
        self._dropped_bytes = attached.dropped_bytes
        # A terminal has one stream; its output stands as the result's stdout.
        self._kept: dict[StreamName, OutputTail] = {"stdout": OutputTail(), "stderr": OutputTail()}
        self._kept["pty"] = self._kept["stdout"]
        self._line_callbacks: dict[StreamName, tuple[LineSplitter, LineCallback]] = {}
        if on_stdout is not None:
            self._line_callbacks["stdout"] = (LineSplitter(), on_stdout)
        if on_stderr is not None:
            self._line_callbacks["stderr"] = (LineSplitter(), on_stderr)
        self._on_output = on_output
        self._exit: Exited | None = None
        self._reported: SandlotError | None = None
        self._finished = False

    @property
    def id(self) -> str:
        """The process id to re-attach with (`commands.connect`), e.g. "proc-…"."""
        return self._info.id

    @property
    def pid(self) -> int:
        return self._info.pid

    @property
    def info(self) -> ProcessInfo:
        """The process as the server described it when this handle attached."""
        return self._info

    @property
    def dropped_bytes(self) -> int:
        """Output that had already left the server's scrollback when this handle attached."""
        return self._dropped_bytes

    @property
    def exit_code(self) -> int | None:
        """The exit code once the handle has seen the process end; `None` before."""
        return None if self._exit is None else self._exit.exit_code

    def _absorb(self, message: str | bytes) -> OutputChunk | None:
        decoded = decode(message)
        if isinstance(decoded, OutputChunk):
            self._kept[decoded.stream].add(decoded.data)
            return decoded
        if isinstance(decoded, Exited):
            self._exit = decoded
        elif isinstance(decoded, Failed):
            # A refused control message is reported and the attachment goes on; a
            # failed attachment is reported and then closed, which `_lost` raises.
            self._reported = decoded.error
        return None

    def _callbacks_for(self, chunk: OutputChunk) -> _Pending:
        pending: _Pending = []
        if self._on_output is not None:
            pending.append((self._on_output, chunk.data))
        if chunk.stream in self._line_callbacks:
            splitter, callback = self._line_callbacks[chunk.stream]
            pending.extend((callback, line) for line in splitter.feed(chunk.data))
        return pending

    def _final_callbacks(self) -> _Pending:
        """The unfinished last lines, once; the handle is finished afterwards."""
        if self._finished:
            return []
        self._finished = True
        return [
            (callback, line)
            for splitter, callback in self._line_callbacks.values()
            for line in splitter.flush()
        ]

    def _lost(self, exc: BaseException) -> SandlotError:
        if self._reported is not None:
            return self._reported
        return InternalError(
            f"the attachment to process {self.id} closed before it exited ({exc}); "
            "it may still run: re-attach with commands.connect(id)",
            details={"processId": self.id},
            retryable=True,
        )

    def _closed(self) -> InvalidStateError:
        what = "has exited" if self._exit is not None else "is no longer attached"
        return InvalidStateError(f"process {self.id} {what}", details={"processId": self.id})

    def _output_details(self) -> dict[str, Any]:
        return {
            "processId": self.id,
            "stdout": self._kept["stdout"].text(),
            "stderr": self._kept["stderr"].text(),
        }

    def _still_running(self, timeout: float | None) -> CommandTimeoutError:
        return CommandTimeoutError(
            f"process {self.id} was still running after {timeout} s; it was left running",
            details={**self._output_details(), "timeout": timeout, "killed": False},
        )

    def _result(self) -> CommandResult:
        assert self._exit is not None
        if self._exit.timed_out:
            raise CommandTimeoutError(
                f"process {self.id} ran past its timeout and was killed",
                details={**self._output_details(), "killed": True},
            )
        return CommandResult(
            stdout=self._kept["stdout"].text(),
            stderr=self._kept["stderr"].text(),
            exit_code=self._exit.exit_code,
            signal=self._exit.signal,
            duration_ms=self._exit.duration_ms,
            truncated=(
                self._dropped_bytes > 0
                or self._kept["stdout"].truncated
                or self._kept["stderr"].truncated
            ),
        )

    def __repr__(self) -> str:
        state = "running" if self._exit is None else f"exited({self.exit_code})"
        return f"{type(self).__name__}(id={self.id!r}, pid={self.pid}, {state})"


class CommandHandle(_HandleBase[SyncTransport, "SyncWebSocket"]):
    """A running process: iterate its output, write to its stdin, signal it, wait for it.

    Disconnecting (or leaving a `with` block) detaches without stopping the process.
    """

    @classmethod
    def _attach(
        cls,
        sandbox_id: str,
        transport: SyncTransport,
        process_id: str,
        **callbacks: Any,
    ) -> Self:
        socket = transport.open_websocket(attach_path(sandbox_id, process_id))
        try:
            try:
                message = socket.recv(timeout=transport.timeout.read)
            except TimeoutError:
                raise InternalError("the server did not greet the attachment in time") from None
            except ConnectionClosed as exc:
                raise InternalError(f"the attachment closed at once ({exc})") from None
            return cls(sandbox_id, transport, socket, greeting(message), **callbacks)
        except BaseException:
            socket.close()
            raise

    def stream(self) -> Iterator[OutputChunk]:
        """Output chunks as they come: the scrollback first, then live; ends at the exit."""
        while (chunk := self._next(None)) is not None:
            yield chunk

    def wait(self, timeout: float | None = None) -> CommandResult:
        """Read the output to the end and return how the process ended.

        Past `timeout` seconds, `CommandTimeoutError` (with the output so far) is
        raised and the process is left running. If the server killed the process at
        its own deadline, `CommandTimeoutError` is raised too.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while self._next(deadline) is not None:
                _check(deadline)
        except TimeoutError:
            raise self._still_running(timeout) from None
        return self._result()

    def pump(self, timeout: float = 0.0) -> list[OutputChunk]:
        """Read the output that arrives within `timeout` seconds, calling the
        callbacks; returns the chunks read (fewer if the process exits first)."""
        deadline = time.monotonic() + timeout
        chunks: list[OutputChunk] = []
        try:
            while (chunk := self._next(deadline)) is not None:
                chunks.append(chunk)
                _check(deadline)
        except TimeoutError:
            pass
        return chunks

    def send_stdin(self, data: str | bytes) -> None:
        """Write to the process's stdin (text as UTF-8)."""
        if data:
            self._send(stdin_message(data))

    def close_stdin(self) -> None:
        """Signal end of input. A process that has already ended has no stdin to close,
        so a closed attachment is not an error here."""
        with contextlib.suppress(InvalidStateError):
            self._send(eof_message())

    def kill(self, signal: str = DEFAULT_SIGNAL) -> None:
        """Send `signal` (a name such as "SIGTERM") to the process's whole group."""
        self._info = self._transport.send(signal_call(self._sandbox_id, self.id, signal))

    def disconnect(self) -> None:
        """Detach; the process keeps running and can be re-attached by its id."""
        self._socket.close()

    def close(self) -> None:
        """The same as `disconnect`: detach, leaving the process running."""
        self.disconnect()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    def _next(self, deadline: float | None) -> OutputChunk | None:
        while self._exit is None:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                message = self._socket.recv(timeout=remaining)
            except ConnectionClosed as exc:
                raise self._lost(exc) from None
            chunk = self._absorb(message)
            if chunk is not None:
                for callback, arg in self._callbacks_for(chunk):
                    callback(arg)
                return chunk
        self._socket.close()
        for callback, arg in self._final_callbacks():
            callback(arg)
        return None

    def _send(self, message: str | bytes) -> None:
        try:
            self._socket.send(message)
        except ConnectionClosed:
            raise self._closed() from None


class PtyHandle(CommandHandle):
    """A process on a terminal: one output stream ("pty"), keystrokes in, a size."""

    def send(self, data: str | bytes) -> None:
        """Type `data` into the terminal."""
        self.send_stdin(data)

    def resize(self, cols: int, rows: int) -> None:
        self._send(resize_message(cols, rows))


class AsyncCommandHandle(_HandleBase[AsyncTransport, "AsyncWebSocket"]):
    """`CommandHandle` for asyncio: `async for chunk in h.stream()`, `await h.wait()`.

    Callbacks may be plain functions or coroutine functions.
    """

    @classmethod
    async def _attach(
        cls,
        sandbox_id: str,
        transport: AsyncTransport,
        process_id: str,
        **callbacks: Any,
    ) -> Self:
        socket = await transport.open_websocket(attach_path(sandbox_id, process_id))
        try:
            try:
                async with asyncio.timeout(transport.timeout.read):
                    message = await socket.recv()
            except TimeoutError:
                raise InternalError("the server did not greet the attachment in time") from None
            except ConnectionClosed as exc:
                raise InternalError(f"the attachment closed at once ({exc})") from None
            return cls(sandbox_id, transport, socket, greeting(message), **callbacks)
        except BaseException:
            await socket.close()
            raise

    async def stream(self) -> AsyncIterator[OutputChunk]:
        """Output chunks as they come: the scrollback first, then live; ends at the exit."""
        while (chunk := await self._next()) is not None:
            yield chunk

    async def wait(self, timeout: float | None = None) -> CommandResult:
        """Read the output to the end and return how the process ended; see
        `CommandHandle.wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                while await self._next() is not None:
                    _check(deadline)
        except TimeoutError:
            raise self._still_running(timeout) from None
        return self._result()

    async def pump(self, timeout: float = 0.0) -> list[OutputChunk]:
        """Read the output that arrives within `timeout` seconds; see
        `CommandHandle.pump`."""
        deadline = time.monotonic() + timeout
        chunks: list[OutputChunk] = []
        try:
            async with asyncio.timeout(timeout):
                while (chunk := await self._next()) is not None:
                    chunks.append(chunk)
                    _check(deadline)
        except TimeoutError:
            pass
        return chunks

    async def send_stdin(self, data: str | bytes) -> None:
        if data:
            await self._send(stdin_message(data))

    async def close_stdin(self) -> None:
        with contextlib.suppress(InvalidStateError):
            await self._send(eof_message())

    async def kill(self, signal: str = DEFAULT_SIGNAL) -> None:
        self._info = await self._transport.send(signal_call(self._sandbox_id, self.id, signal))

    async def disconnect(self) -> None:
        """Detach; the process keeps running and can be re-attached by its id."""
        await self._socket.close()

    async def close(self) -> None:
        """The same as `disconnect`."""
        await self.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def _next(self) -> OutputChunk | None:
        while self._exit is None:
            try:
                message = await self._socket.recv()
            except ConnectionClosed as exc:
                raise self._lost(exc) from None
            chunk = self._absorb(message)
            if chunk is not None:
                await _call_all(self._callbacks_for(chunk))
                return chunk
        await self._socket.close()
        await _call_all(self._final_callbacks())
        return None

    async def _send(self, message: str | bytes) -> None:
        try:
            await self._socket.send(message)
        except ConnectionClosed:
            raise self._closed() from None


class AsyncPtyHandle(AsyncCommandHandle):
    """`PtyHandle` for asyncio."""

    async def send(self, data: str | bytes) -> None:
        await self.send_stdin(data)

    async def resize(self, cols: int, rows: int) -> None:
        await self._send(resize_message(cols, rows))


def _check(deadline: float | None) -> None:
    """Past the deadline even while output keeps coming (reads then never block)."""
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError


async def _call_all(pending: _Pending) -> None:
    for callback, arg in pending:
        outcome = callback(arg)
        if inspect.isawaitable(outcome):
            await outcome
