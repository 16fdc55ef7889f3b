"""What every relayed SSH channel shares: bounded input, output that waits for the window.

asyncssh hands a session its data through callbacks; the agent takes it through
coroutines that wait for credit. The bridge queues what arrives, stops reading the
channel once a window's worth waits (the client then stops sending), and makes the
output side wait while the channel's send buffer is full, so a slow end on either side
slows the other instead of growing memory in the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.session import SSHSession

from sandlot.edge.ssh.target import Target

log = logging.getLogger(__name__)

INPUT_HIGH_WATER = 1024 * 1024
"""Queued input bytes at which the channel stops reading from the client."""

_outliving: set[asyncio.Task[None]] = set()
"""Clean-up that runs on after its channel closed, referenced until it is done."""


class ChannelBridge(SSHSession[bytes]):
    def __init__(self, target: Target) -> None:
        self.target = target
        self._channel: SSHChannel[bytes] | None = None
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._held = contextlib.ExitStack()
        """An open channel keeps the sandbox from being paused as idle."""

    # ---- asyncssh's callbacks ---------------------------------------------------------

    def connection_made(self, chan: Any) -> None:
        self._channel = chan
        self._held.enter_context(self.target.service.live.hold(self.target.sandbox_id))

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._inbox.put_nowait(data)
        self._queued += len(data)
        if self._queued >= INPUT_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._inbox.put_nowait(None)
        return True  # stay half-open: output may still follow

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._held.close()
        self._writable.set()
        for task in list(self._tasks):
            task.cancel()

    # ---- for the relays ---------------------------------------------------------------

    @property
    def _chan(self) -> SSHChannel[bytes]:
        assert self._channel is not None, "used before the channel was made"
        return self._channel

    async def next_input(self) -> bytes | None:
        """The client's next bytes, None at its end of file."""
        data = await self._inbox.get()
        if data is not None:
            self._queued -= len(data)
            if self._reading_paused and self._queued < INPUT_HIGH_WATER // 2:
                self._reading_paused = False
                self._chan.resume_reading()
            self.target.touch()
        return data

    async def write(self, data: bytes, *, stderr: bool = False) -> None:
        """Send to the client, waiting while the channel's buffer is full."""
        if self._chan.is_closing():
            raise ConnectionResetError("the SSH channel closed")
        if stderr:
            self._chan.write(data, asyncssh.EXTENDED_DATA_STDERR)
        else:
            self._chan.write(data)
        self.target.touch()
        await self._writable.wait()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run part of the relay; it is cancelled when the channel goes away."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def spawn_detached(self, work: Coroutine[Any, Any, None]) -> None:
        """Run clean-up that must finish even though the channel is gone."""
        task = asyncio.get_running_loop().create_task(work)
        _outliving.add(task)
        task.add_done_callback(_outliving.discard)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "SSH relay for %s failed", self.target.sandbox_id, exc_info=task.exception()
            )
            self._chan.close()
