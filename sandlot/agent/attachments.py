"""A client attached to a background process: replay, live output, then the exit.

Each attachment has its own queue, filled with a snapshot of the scrollback when it
attaches and then with live output, and drained onto its stream as the client grants
credit. Once the queue holds a read's worth of bytes the attachment holds the process's
output, so a slow client slows the process down instead of growing the agent; a client
that leaves releases the hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import errors
from .processes import OUTPUT_READ_SIZE, ManagedProcess, parse_signal
from .protocol import CHUNK_SIZE, DATA, END, SIGNAL, Frame, ProcessInfo

if TYPE_CHECKING:
    from .server import Stream

log = logging.getLogger(__name__)

HIGH_WATER = OUTPUT_READ_SIZE
"""Queued bytes at which the attachment stops the process's output until it catches up."""
FRAME_TARGET = 64 * 1024
"""Chunks smaller than this are merged with the next ones of the same stream."""


def feed_process(
    proc: ManagedProcess,
    frame: Frame,
    consumed: Callable[[int], None],
    deliver: Callable[[int], None],
) -> None:
    """Apply a client's frame to a process: stdin data, end of stdin, or a signal that
    `deliver` sends (to the process, or to its whole group)."""
    kind = frame.type
    if kind == DATA:
        proc.write_stdin(frame.payload, consumed)
    elif kind == END:
        proc.close_stdin()
    elif kind == SIGNAL:
        try:
            deliver(parse_signal(frame.header.get("signal", "")))
        except errors.AgentError as exc:
            log.warning("ignoring signal frame: %s", exc.message)


class Attachment:
    def __init__(self, stream: Stream, proc: ManagedProcess) -> None:
        self._stream = stream
        self._proc = proc
        self._queue: deque[tuple[str, bytes]] = deque()
        self._queued = 0
        self._wakeup: asyncio.Future[None] | None = None
        self.dropped_bytes = 0
        """Scrollback bytes lost before this attachment's replay begins."""
        if proc.scrollback is not None:
            self.dropped_bytes = proc.scrollback.dropped
            for fd, data in proc.scrollback.snapshot():
                self._enqueue(fd, data)
        if not proc.finished.done():
            proc.attach(self)
        proc.finished.add_done_callback(self._on_finished)
        stream.take_frames(self._on_frame)

    def output(self, fd: str, data: bytes) -> None:
        self._enqueue(fd, data)

    async def run(self) -> ProcessInfo:
        """Send everything queued as the client grants credit, until the process finished;
        returns its final info."""
        stream, proc = self._stream, self._proc
        while True:
            while self._queue:
                await stream.send_window.wait()
                fd, data = self._next_frame()
                stream.send_data(data, fd)
                await stream.drain()
                self._queued -= len(data)
                if self._queued < HIGH_WATER:
                    proc.release_output(self)
            if proc.finished.done():
                return proc.info()
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    def _next_frame(self) -> tuple[str, bytes]:
        """The next frame's worth of output: small reads of one stream sent together (a
        terminal is read a few KiB at a time)."""
        fd, data = self._queue.popleft()
        if not self._queue or self._queue[0][0] != fd or len(data) >= FRAME_TARGET:
            return fd, data
        parts, size = [data], len(data)
        while (
            self._queue and self._queue[0][0] == fd and size + len(self._queue[0][1]) <= CHUNK_SIZE
        ):
            more = self._queue.popleft()[1]
            parts.append(more)
            size += len(more)
        return fd, b"".join(parts)

    def close(self) -> None:
        self._proc.finished.remove_done_callback(self._on_finished)
        self._proc.detach(self)
        self._queue.clear()

    def _enqueue(self, fd: str, data: bytes) -> None:
        self._queue.append((fd, data))
        self._queued += len(data)
        if self._queued >= HIGH_WATER:
            self._proc.hold_output(self)
        self._wake()

    def _on_finished(self, _: object) -> None:
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _on_frame(self, frame: Frame) -> None:
        feed_process(self._proc, frame, self._stream.consumed, self._proc.signal_group)
