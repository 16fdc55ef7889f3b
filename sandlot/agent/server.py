"""The agent's server: a unix socket, many connections, many streams on each.

Each request opens a stream handled by its own task. When a connection drops, its tasks
are cancelled (uploads in flight are discarded) but the processes they started keep
running: they belong to the agent, not to the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import errors, handlers, tcp
from .errors import AgentError
from .files import default_workdir
from .processes import ProcessTable
from .protocol import (
    CANCEL,
    CREDIT,
    DATA,
    ERROR,
    EVENT,
    READ_BUFFER_LIMIT,
    REQUEST,
    RESPONSE,
    Frame,
    FrameWriter,
    Inbox,
    ProtocolError,
    ReceiveWindow,
    SendWindow,
    credit_of,
    read_frame,
)
from .reaper import Reaper
from .syslog import LogRing, SyslogSocket

log = logging.getLogger(__name__)

Handler = Callable[["Agent", "Stream", dict[str, Any]], Awaitable[Any]]

HANDLERS: dict[str, Handler] = {
    "ping": handlers.ping,
    "exec": handlers.exec_process,
    "start": handlers.start_process,
    "attach": handlers.attach,
    "list_processes": handlers.list_processes,
    "process_info": handlers.process_info,
    "signal": handlers.signal_process,
    "resize": handlers.resize,
    "read_file": handlers.read_file,
    "write_file": handlers.write_file,
    "list_dir": handlers.list_dir,
    "stat": handlers.stat,
    "mkdir": handlers.mkdir,
    "remove": handlers.remove,
    "replace": handlers.replace,
    "connect": tcp.connect,
    "quiesce": handlers.quiesce,
    "follow_log": handlers.follow_log,
}


class Stream:
    """One request and every frame that flows on its stream id."""

    def __init__(self, connection: Connection, sid: int) -> None:
        self.sid = sid
        self._out = connection.out
        self.send_window = SendWindow()
        self.receive_window = ReceiveWindow()
        self.inbox = Inbox()
        self.on_frame: Callable[[Frame], None] | None = None
        """Takes the stream's incoming frames instead of the inbox (see `take_frames`)."""
        self.on_credit: Callable[[], None] | None = None
        self.cancelled_by_client = False
        self.task: asyncio.Task[None] | None = None

    def deliver(self, frame: Frame) -> None:
        kind = frame.type
        if kind == CREDIT:
            self.send_window.grant(credit_of(frame))
            if self.on_credit is not None:
                self.on_credit()
        elif kind == CANCEL:
            self.cancelled_by_client = True
            if self.task is not None:
                self.task.cancel()
        else:
            if kind == DATA:
                self.receive_window.received(len(frame.payload))
            if self.on_frame is not None:
                self.on_frame(frame)
            else:
                self.inbox.put(frame)

    def take_frames(self, on_frame: Callable[[Frame], None]) -> None:
        """Handle incoming frames (credit and cancel excepted) with a callback from now on,
        starting with those that arrived before the handler was ready.
        """
        self.on_frame = on_frame
        for frame in self.inbox.pop_all():
            on_frame(frame)

    def event(self, name: str, **fields: Any) -> None:
        self._out.send({"sid": self.sid, "type": EVENT, "event": name, **fields})

    def send_data(self, payload: bytes, fd: str | None = None) -> None:
        self._out.send_data(self.sid, payload, fd)
        self.send_window.consume(len(payload))

    def consumed(self, n: int) -> None:
        """The handler used `n` bytes of incoming data: grant credit when a batch is due."""
        grant = self.receive_window.consumed(n)
        if grant:
            with contextlib.suppress(ConnectionError):
                self._out.send({"sid": self.sid, "type": CREDIT, "n": grant})

    async def drain(self) -> None:
        await self._out.drain()


class Connection:
    def __init__(
        self, agent: Agent, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.agent = agent
        self._reader = reader
        self.out = FrameWriter(writer)
        self._streams: dict[int, Stream] = {}

    async def serve(self) -> None:
        try:
            while True:
                frame = await read_frame(self._reader)
                if frame is None:
                    break
                self._dispatch(frame)
        except ProtocolError as exc:
            log.warning("closing a connection that broke the protocol: %s", exc)
        except OSError:
            pass
        except Exception:
            log.exception("closing a connection after an unexpected error")
        finally:
            self.out.close()
            for stream in list(self._streams.values()):
                if stream.task is not None:
                    stream.task.cancel()

    def _dispatch(self, frame: Frame) -> None:
        if frame.type == REQUEST:
            self._open(frame)
            return
        stream = self._streams.get(frame.sid)
        if stream is not None:  # else: a late frame for a stream that already ended
            stream.deliver(frame)

    def _open(self, frame: Frame) -> None:
        sid = frame.sid
        if sid in self._streams:
            raise ProtocolError(f"stream {sid} is already open")
        stream = Stream(self, sid)
        self._streams[sid] = stream
        op, args = frame.header.get("op"), frame.header.get("args", {})
        stream.task = asyncio.get_running_loop().create_task(self._run(stream, op, args))
        # Not in _run's own `finally`: a task cancelled before it ever ran skips that.
        stream.task.add_done_callback(lambda _: self._streams.pop(sid, None))

    async def _run(self, stream: Stream, op: object, args: object) -> None:
        try:
            handler = HANDLERS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise errors.invalid(f"unknown operation: {op!r}")
            if not isinstance(args, dict):
                raise errors.invalid("args must be an object")
            result = await handler(self.agent, stream, args)
        except AgentError as exc:
            self._answer({"sid": stream.sid, "type": ERROR, "error": exc.to_dict()})
        except (asyncio.CancelledError, ConnectionError):
            pass  # the client cancelled or went away: nobody to answer
        except Exception as exc:
            log.exception("%s failed", op)
            internal = AgentError(errors.INTERNAL, f"{op} failed: {exc!r}")
            self._answer({"sid": stream.sid, "type": ERROR, "error": internal.to_dict()})
        else:
            self._answer({"sid": stream.sid, "type": RESPONSE, "result": result})

    def _answer(self, header: dict[str, Any]) -> None:
        try:
            self.out.send(header)
        except ConnectionError:
            pass
        except ProtocolError as exc:
            error = AgentError(errors.INTERNAL, f"answer too large for one frame: {exc}")
            self.out.send({"sid": header["sid"], "type": ERROR, "error": error.to_dict()})


class Agent:
    def __init__(
        self, socket_path: str, workdir: str | None = None, syslog_path: str | None = None
    ) -> None:
        self.socket_path = socket_path
        self.workdir = workdir or default_workdir()
        self.started = time.monotonic()
        self.base_env = dict(os.environ)
        self.reaper = Reaper()
        self.processes = ProcessTable(self.reaper)
        self._connections: set[asyncio.Task[Any]] = set()
        self._shell: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._relistening = asyncio.Lock()
        self.logs = LogRing()
        self._syslog = SyslogSocket(syslog_path, self.logs) if syslog_path else None

    @property
    def shell(self) -> str:
        if self._shell is None:
            self._shell = "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"
        return self._shell

    async def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then kill every process started and return 0."""
        loop = asyncio.get_running_loop()
        self.reaper.install(loop)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(self._relisten()))
        self._server = await self._listen()
        self._open_syslog()
        try:
            await stop.wait()
        finally:
            self._stop_serving()
            self.processes.kill_all()
        return 0

    async def quiesce(self) -> dict[str, Any]:
        """Stop serving before a checkpoint: CRIU cannot restore a listening socket bound
        to a path on a host bind mount, nor a connection to a peer outside the sandbox.
        Processes run on; the host sends SIGUSR1 after restore (or after a failed dump)
        to have the agent listen again.
        """
        asyncio.get_running_loop().call_soon(self._stop_serving)
        return {"quiesced": True}

    def _stop_serving(self) -> None:
        # The syslog socket too: CRIU fails to restore a socket bound to a path in the
        # sandbox's mount namespace. Lines sent in the moment it is closed are lost.
        if self._syslog is not None:
            self._syslog.close()
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)

    async def _relisten(self) -> None:
        # Wake-ups come in pairs (a snapshot thaws, then ends) and both can be read at
        # once: a second listener would take the socket's path from the first and
        # leave it open, where the next checkpoint dumps a socket it cannot restore.
        async with self._relistening:
            if self._server is None:
                self._server = await self._listen()
                self._open_syslog()

    def _open_syslog(self) -> None:
        if self._syslog is None:
            return
        try:
            self._syslog.open()
        except OSError as exc:
            log.warning("no system log: cannot bind %s: %s", self._syslog.path, exc)

    async def _listen(self) -> asyncio.AbstractServer:
        path = self.socket_path
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # left by a previous agent
        # Only root (the host's, through the bind mount) may connect: the socket is 0600
        # from the start rather than chmod-ed after a window.
        umask = os.umask(0o177)
        try:
            return await asyncio.start_unix_server(self._accept, path, limit=READ_BUFFER_LIMIT)
        finally:
            os.umask(umask)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await Connection(self, reader, writer).serve()
        except asyncio.CancelledError:
            pass  # shutting down; asyncio's stream machinery would log a cancelled task
        finally:
            self._connections.discard(task)
