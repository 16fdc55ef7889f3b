"""Callbacks for events: `sbx.on("status", cb)`, `client.on("exec.completed", cb)`.

A listener holds the callbacks of one scope (a sandbox, or the organisation) and, while
it has any, reads one event stream in the background: a daemon thread for `Listener`,
an asyncio task for `AsyncListener`. Callbacks run there, one event at a time, never
on the caller's thread; an exception in one is logged and the others still run. The
stream carries every event type and the callbacks are picked here, so registering a
new type never reopens the socket (and never opens a gap in what is seen).

The first callback opens the socket before `on` returns, so an event caused right
after `on` is not missed. The listener ends when its last callback is removed, when
its owner closes, or once its sandbox has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sandlot.errors import SandlotError
from sandlot.sdk._event_stream import AsyncEventStream, EventStream
from sandlot.sdk._events import EventCursor
from sandlot.sdk._http import AsyncTransport, SyncTransport
from sandlot.sdk._models import Event

logger = logging.getLogger("sandlot.events")

ANY_TYPE = "*"
EventCallback = Callable[[Event], object]
AsyncEventCallback = Callable[[Event], object | Awaitable[object]]
CallbackT = TypeVar("CallbackT", EventCallback, AsyncEventCallback)
TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)
# How long closing waits for the listener thread to see its socket close.
STOP_WAIT = 5.0


class _ListenerBase(Generic[TransportT, CallbackT]):
    def __init__(self, transport: TransportT, sandbox_id: str | None) -> None:
        self._transport: TransportT = transport
        self._sandbox_id = sandbox_id
        self._callbacks: dict[str, list[CallbackT]] = {}
        self._lock = threading.Lock()
        # Where a restarted listener resumes, so a stop and a start lose nothing.
        self._last_id: int | None = None

    def _add(self, event_type: str, callback: CallbackT) -> None:
        with self._lock:
            self._callbacks.setdefault(event_type, []).append(callback)

    def _remove(self, event_type: str, callback: CallbackT | None) -> bool:
        """Forget `callback` (every callback of the type if `None`); `True` when none
        remain at all."""
        with self._lock:
            kept = self._callbacks.get(event_type, [])
            if callback is None:
                kept.clear()
            else:
                with contextlib.suppress(ValueError):
                    kept.remove(callback)
            if not kept:
                self._callbacks.pop(event_type, None)
            return not self._callbacks

    def _callbacks_for(self, event: Event) -> list[CallbackT]:
        with self._lock:
            return [
                *self._callbacks.get(event.type, ()),
                *self._callbacks.get(ANY_TYPE, ()),
            ]

    def _cursor(self) -> EventCursor:
        return EventCursor(self._sandbox_id, since=self._last_id)

    def _scope(self) -> str:
        return self._sandbox_id or "organisation"

    @staticmethod
    def _callback_failed(callback: object, event: Event) -> None:
        logger.exception("event callback %r failed on a %s event", callback, event.type)

    def _stream_failed(self, err: SandlotError) -> None:
        logger.error("stopped listening to the events of %s: %s", self._scope(), err)


class Listener(_ListenerBase[SyncTransport, EventCallback]):
    """The callbacks of one scope and the daemon thread that calls them."""

    def __init__(self, transport: SyncTransport, sandbox_id: str | None) -> None:
        super().__init__(transport, sandbox_id)
        self._stream: EventStream | None = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on(self, event_type: str, callback: EventCallback) -> None:
        self._add(event_type, callback)
        with self._starting:
            if self.running:
                return
            try:
                self._start()
            except BaseException:
                self._remove(event_type, callback)
                raise

    def off(self, event_type: str, callback: EventCallback | None = None) -> None:
        if self._remove(event_type, callback):
            self.stop()

    def finish(self, timeout: float) -> None:
        """Let the stream end by itself (a sandbox's does after its final status), so
        callbacks see that status; stop it if it has not within `timeout`."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.stop()

    def stop(self) -> None:
        stream, thread = self._stream, self._thread
        if stream is not None:
            stream.close()
        # A callback may stop its own listener; that thread ends once it returns.
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT)

    def _start(self) -> None:
        stream = EventStream(self._transport, self._cursor(), give_up_after=None).connect()
        self._stream = stream
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name=f"sandlot-events-{self._scope()}", daemon=True
        )
        self._transport.on_close.append(self.stop)
        self._thread.start()

    def _run(self, stream: EventStream) -> None:
        try:
            while (event := stream.read()) is not None:
                self._last_id = stream.last_id
                for callback in self._callbacks_for(event):
                    try:
                        callback(event)
                    except Exception:
                        self._callback_failed(callback, event)
        except SandlotError as err:
            self._stream_failed(err)
        finally:
            stream.close()
            with contextlib.suppress(ValueError):
                self._transport.on_close.remove(self.stop)


class AsyncListener(_ListenerBase[AsyncTransport, AsyncEventCallback]):
    """The callbacks of one scope and the asyncio task that calls them; callbacks may
    be plain functions or coroutine functions."""

    def __init__(self, transport: AsyncTransport, sandbox_id: str | None) -> None:
        super().__init__(transport, sandbox_id)
        self._stream: AsyncEventStream | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def on(self, event_type: str, callback: AsyncEventCallback) -> None:
        self._add(event_type, callback)
        if not self.running:
            try:
                await self._start()
            except BaseException:
                self._remove(event_type, callback)
                raise

    async def off(self, event_type: str, callback: AsyncEventCallback | None = None) -> None:
        if self._remove(event_type, callback):
            await self.stop()

    async def finish(self, timeout: float) -> None:
        """See `Listener.finish`."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout)
        await self.stop()

    async def stop(self) -> None:
        stream, task = self._stream, self._task
        if stream is not None:
            await stream.aclose()
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STOP_WAIT)

    async def _start(self) -> None:
        stream = await AsyncEventStream(
            self._transport, self._cursor(), give_up_after=None
        ).connect()
        self._stream = stream
        self._transport.on_close.append(self.stop)
        self._task = asyncio.create_task(self._run(stream), name=f"sandlot-events-{self._scope()}")

    async def _run(self, stream: AsyncEventStream) -> None:
        try:
            while (event := await stream.read()) is not None:
                self._last_id = stream.last_id
                for callback in self._callbacks_for(event):
                    try:
                        outcome = callback(event)
                        if inspect.isawaitable(outcome):
                            await outcome
                    except Exception:
                        self._callback_failed(callback, event)
        except SandlotError as err:
            self._stream_failed(err)
        finally:
            await stream.aclose()
            with contextlib.suppress(ValueError):
                self._transport.on_close.remove(self.stop)
