"""Streams of events read from the events WebSocket, reconnecting after a drop.

`EventStream` (blocking) and `AsyncEventStream` share `_StreamBase`: the cursor
(what to ask for on reconnecting, which messages to pass on), the reconnection
schedule and what a closed socket means. The twins only open, read and close sockets.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from websockets.exceptions import ConnectionClosed

from sandlot.errors import SandlotError
from sandlot.sdk._events import NORMAL_CLOSURE, EventCursor, reconnect_delay
from sandlot.sdk._http import AsyncTransport, SyncTransport
from sandlot.sdk._models import Event

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection as AsyncWebSocket
    from websockets.sync.client import ClientConnection as SyncWebSocket

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

# How long an iterator keeps trying to reconnect before it raises the last error.
GIVE_UP_AFTER = 60.0


class _StreamBase(Generic[TransportT]):
    def __init__(
        self,
        transport: TransportT,
        cursor: EventCursor,
        *,
        idle_timeout: float | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        self._transport: TransportT = transport
        self._cursor = cursor
        self._idle_timeout = idle_timeout
        self._give_up_after = give_up_after
        self._closed = False
        self._failures = 0
        self._failing_since: float | None = None
        self._retry_at = 0.0

    @property
    def last_id(self) -> int | None:
        """The id of the last persisted event seen: where a new stream would resume."""
        return self._cursor.last_id

    @property
    def finished(self) -> bool:
        """Closed, or told by the server (or a sandbox's final status) that nothing
        more will come."""
        return self._closed or self._cursor.finished

    def _wait_before_connecting(self) -> float:
        return max(self._retry_at - time.monotonic(), 0.0)

    def _connect_failed(self, err: SandlotError) -> None:
        """Count a failed attempt; raise `err` when it is not worth trying again."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._failures += 1
        gave_up = (
            self._give_up_after is not None and now - self._failing_since >= self._give_up_after
        )
        if not err.retryable or gave_up:
            raise err
        self._retry_at = now + reconnect_delay(self._failures)

    def _connected(self) -> None:
        self._failures = 0
        self._failing_since = None

    def _dropped(self, exc: ConnectionClosed) -> None:
        """The socket closed: over if we closed it or the server said so normally;
        otherwise the next read reconnects from the last id seen."""
        if exc.rcvd is not None and exc.rcvd.code == NORMAL_CLOSURE:
            self._cursor.finished = True

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def __repr__(self) -> str:
        scope = self._cursor.sandbox_id or "organisation"
        return f"{type(self).__name__}({scope}, last_id={self.last_id})"


class EventStream(_StreamBase[SyncTransport], Iterator[Event]):
    """Events as they come: with `since`, the persisted ones after it first.

    Iterating ends when the sandbox reaches a final status, when the server ends the
    stream, after `idle_timeout` seconds without an event (if given), or on `close()`
    (which any thread may call). A dropped connection is reopened from the last id
    seen; after `give_up_after` seconds of failed attempts the last error is raised.
    """

    def __init__(
        self,
        transport: SyncTransport,
        cursor: EventCursor,
        *,
        idle_timeout: float | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        super().__init__(transport, cursor, idle_timeout=idle_timeout, give_up_after=give_up_after)
        self._socket: SyncWebSocket | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def connect(self) -> Self:
        """Open the socket now, so events from this moment on are caught; errors
        (a wrong key, an unknown sandbox) are raised here."""
        with self._lock:
            if self._socket is not None or self._closed:
                return self
        socket = self._transport.open_websocket(self._cursor.path(), keepalive=True)
        self._adopt(socket)
        return self

    def read(self, timeout: float | None = None) -> Event | None:
        """The next event, or `None` if none came within `timeout` seconds or the
        stream is over (`finished` tells which)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            socket = self._socket or self._reconnect(deadline)
            if socket is None:
                return None
            try:
                message = socket.recv(timeout=self._remaining(deadline))
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                self._dropped(exc)
                with self._lock:
                    if self._socket is socket:
                        self._socket = None
                continue
            event = self._cursor.accept(message)
            if self._cursor.finished:
                self._release()
            if event is not None:
                return event
        return None

    def __next__(self) -> Event:
        event = self.read(self._idle_timeout)
        if event is None:
            self.close()
            raise StopIteration
        return event

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reconnect(self, deadline: float | None) -> SyncWebSocket | None:
        """A fresh socket, retrying on the schedule; `None` past the deadline or once closed."""
        while not self._closed:
            wait = self._wait_before_connecting()
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < wait:
                self._wake.wait(remaining)
                return None
            if wait and self._wake.wait(wait):
                return None
            try:
                socket = self._transport.open_websocket(self._cursor.path(), keepalive=True)
            except SandlotError as err:
                self._connect_failed(err)
                continue
            return self._adopt(socket)
        return None

    def _adopt(self, socket: SyncWebSocket) -> SyncWebSocket | None:
        with self._lock:
            if not self._closed:
                self._socket = socket
                self._connected()
                return socket
        socket.close()
        return None

    def _release(self) -> None:
        with self._lock:
            socket, self._socket = self._socket, None
        if socket is not None:
            socket.close()


class AsyncEventStream(_StreamBase[AsyncTransport], AsyncIterator[Event]):
    """`EventStream` for asyncio: `async for event in stream`, `await stream.read()`."""

    def __init__(
        self,
        transport: AsyncTransport,
        cursor: EventCursor,
        *,
        idle_timeout: float | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        super().__init__(transport, cursor, idle_timeout=idle_timeout, give_up_after=give_up_after)
        self._socket: AsyncWebSocket | None = None
        self._wake = asyncio.Event()

    async def connect(self) -> Self:
        """Open the socket now; see `EventStream.connect`."""
        if self._socket is None and not self._closed:
            await self._adopt(
                await self._transport.open_websocket(self._cursor.path(), keepalive=True)
            )
        return self

    async def read(self, timeout: float | None = None) -> Event | None:
        """The next event, or `None` if none came within `timeout` seconds or the
        stream is over (`finished` tells which)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            socket = self._socket or await self._reconnect(deadline)
            if socket is None:
                return None
            try:
                async with asyncio.timeout(self._remaining(deadline)):
                    message = await socket.recv()
            except TimeoutError:
                return None
            except ConnectionClosed as exc:
                self._dropped(exc)
                if self._socket is socket:
                    self._socket = None
                continue
            event = self._cursor.accept(message)
            if self._cursor.finished:
                await self._release()
            if event is not None:
                return event
        return None

    async def __anext__(self) -> Event:
        event = await self.read(self._idle_timeout)
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._closed = True
        self._wake.set()
        await self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _reconnect(self, deadline: float | None) -> AsyncWebSocket | None:
        while not self._closed:
            wait = self._wait_before_connecting()
            remaining = self._remaining(deadline)
            if remaining is not None and remaining < wait:
                await self._sleep(remaining)
                return None
            if wait and await self._sleep(wait):
                return None
            try:
                socket = await self._transport.open_websocket(self._cursor.path(), keepalive=True)
            except SandlotError as err:
                self._connect_failed(err)
                continue
            return await self._adopt(socket)
        return None

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`; `True` if the stream was closed meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _adopt(self, socket: AsyncWebSocket) -> AsyncWebSocket | None:
        if self._closed:
            await socket.close()
            return None
        self._socket = socket
        self._connected()
        return socket

    async def _release(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()
