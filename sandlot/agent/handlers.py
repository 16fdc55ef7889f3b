"""What each request does: check its arguments, then bridge its stream to processes or files.

A handler takes the agent, the request's stream and its `args`, and returns the result
for the `response` frame (or raises AgentError for an `error` frame).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from . import __version__, errors, files, users
from .attachments import Attachment, feed_process
from .processes import ManagedProcess, Terminal, parse_signal
from .protocol import CHUNK_SIZE, DATA, END, PROTOCOL_VERSION, EntryInfo, Frame, ProcessInfo
from .scrollback import DEFAULT_SCROLLBACK, MAX_SCROLLBACK

if TYPE_CHECKING:
    from .server import Agent, Stream

log = logging.getLogger(__name__)


async def ping(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "uptime": time.monotonic() - agent.started,
        "pid": os.getpid(),
    }


async def quiesce(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    return await agent.quiesce()


async def follow_log(agent: Agent, stream: Stream, args: dict[str, Any]) -> None:
    """Send the system log as `log` events ({"lines", "missed"}) from the first line no
    follower was handed yet, then each new line, until the client cancels. `missed`
    counts lines the ring pushed out before anyone took them.
    """
    ring = agent.logs
    after = ring.delivered
    while True:
        lines, missed = ring.after(after)
        if not lines:
            await ring.wait_after(after)
            continue
        stream.event("log", lines=lines, missed=missed)
        # Handed over once queued: a connection that closes now still flushes it.
        after = lines[-1]["seq"]
        ring.delivered = max(ring.delivered, after)
        await stream.drain()


# -- processes ----------------------------------------------------------------------


async def exec_process(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    """Run a command and stream its output until it exits.

    args: `argv` (list of str) or `cmd` (str, run by bash or sh), optional `cwd`, `env`
    (merged over the agent's own), `timeout` (seconds; kills the process group), `stdin`
    (true: the client sends data frames and an end frame; otherwise /dev/null), `user`
    (NAME, UID, NAME:GROUP or UID:GID in the sandbox; the agent's root by default).
    """
    argv = _command(agent, args)
    run_as = users.resolve(args.get("user"))
    cwd = _working_dir(agent, args.get("cwd"), run_as)
    env = _environment(agent, args.get("env"), run_as)
    timeout = _optional_number(args, "timeout")
    stdin = args.get("stdin", False)
    if not isinstance(stdin, bool):
        raise errors.invalid("stdin must be a boolean")
    proc = agent.processes.spawn(
        argv, cwd=cwd, env=env, stdin=stdin, timeout=timeout, run_as=run_as
    )
    stream.event("started", process_id=proc.id, pid=proc.pid)
    bridge = _ProcessBridge(stream, proc)
    proc.attach(bridge)
    try:
        info = await asyncio.shield(proc.finished)
    except asyncio.CancelledError:
        # A client that cancels a run-and-wait wants it stopped; a dropped connection
        # does not stop anything (the process is still in the agent's table).
        if stream.cancelled_by_client:
            proc.kill_group()
        raise
    finally:
        proc.detach(bridge)
    return info.to_dict()


class _ProcessBridge:
    """Carries a process's output to a stream, and the stream's stdin and signals back."""

    def __init__(self, stream: Stream, proc: ManagedProcess) -> None:
        self._stream = stream
        self._proc = proc
        stream.on_credit = self._on_credit
        stream.take_frames(self._on_frame)

    def output(self, fd: str, data: bytes) -> None:
        try:
            self._stream.send_data(data, fd)
        except ConnectionError:
            return
        if self._stream.send_window.credit <= 0:
            self._proc.hold_output(self)

    def _on_credit(self) -> None:
        if self._stream.send_window.credit > 0:
            self._proc.release_output(self)

    def _on_frame(self, frame: Frame) -> None:
        feed_process(self._proc, frame, self._stream.consumed, self._proc.send_signal)


async def start_process(agent: Agent, stream: Stream, args: dict[str, Any]) -> ProcessInfo:
    """Start a background process and answer its info at once.

    args: as for exec (`argv` or `cmd`, `cwd`, `env`, `timeout`, `user`), plus `pty` ([cols,
    rows]: run on a terminal of that size), `max_run_after_disconnect` (seconds: kill the
    process that long after its last client left, or after its start if none attached),
    `scrollback` (bytes of output kept for replay; default 1 MiB).
    """
    argv = _command(agent, args)
    command: str | list[str] = args["cmd"] if args.get("cmd") is not None else argv
    run_as = users.resolve(args.get("user"))
    cwd = _working_dir(agent, args.get("cwd"), run_as)
    env = _environment(agent, args.get("env"), run_as)
    terminal = _terminal(args.get("pty"))
    if terminal is not None:
        from .terminal import DEFAULT_TERM

        given = args.get("env") or {}
        env = {**env, "TERM": given.get("TERM", DEFAULT_TERM)}
    scrollback = args.get("scrollback")
    if scrollback is None:
        scrollback = DEFAULT_SCROLLBACK
    elif not _is_int(scrollback) or not 0 <= scrollback <= MAX_SCROLLBACK:
        raise errors.invalid(f"scrollback must be a number of bytes from 0 to {MAX_SCROLLBACK}")
    linger = args.get("max_run_after_disconnect")
    if linger is not None and (
        isinstance(linger, bool) or not isinstance(linger, (int, float)) or linger < 0
    ):
        raise errors.invalid("max_run_after_disconnect must be a number of seconds, at least 0")
    proc = agent.processes.start_background(
        argv,
        command=command,
        cwd=cwd,
        env=env,
        timeout=_optional_number(args, "timeout"),
        terminal=terminal,
        scrollback=scrollback,
        linger=None if linger is None else float(linger),
        hold_until_attach=_optional_number(args, "hold_until_attach"),
        run_as=run_as,
    )
    return proc.info()


async def attach(agent: Agent, stream: Stream, args: dict[str, Any]) -> ProcessInfo:
    """Follow a background process: an `attached` event (info, dropped_bytes), the replay
    of its scrollback and then its live output as data frames, and its final info as the
    response once it exited. Data and end frames feed its stdin, signal frames signal it.
    Cancelling the stream (or dropping the connection) detaches; the process runs on.
    """
    proc = agent.processes.find(args.get("process_id"))
    attachment = Attachment(stream, proc)
    try:
        stream.event("attached", info=proc.info(), dropped_bytes=attachment.dropped_bytes)
        return await attachment.run()
    finally:
        attachment.close()


async def list_processes(agent: Agent, stream: Stream, args: dict[str, Any]) -> list[ProcessInfo]:
    include_exited = _flag(args, "include_exited")
    return [proc.info() for proc in agent.processes.background(include_exited)]


async def process_info(agent: Agent, stream: Stream, args: dict[str, Any]) -> ProcessInfo:
    return agent.processes.find(args.get("process_id")).info()


async def signal_process(agent: Agent, stream: Stream, args: dict[str, Any]) -> None:
    """Signal a background process's whole group; nothing happens once it exited."""
    proc = agent.processes.find(args.get("process_id"))
    proc.signal_group(parse_signal(args.get("signal")))


async def resize(agent: Agent, stream: Stream, args: dict[str, Any]) -> None:
    proc = agent.processes.find(args.get("process_id"))
    size = _terminal([args.get("cols"), args.get("rows")])
    assert size is not None
    proc.resize(size.cols, size.rows)


def _terminal(value: object) -> Terminal | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(_is_int(n) and 1 <= n <= 0xFFFF for n in value)
    ):
        raise errors.invalid("a terminal size is [cols, rows], each from 1 to 65535")
    return Terminal(cols=value[0], rows=value[1])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _command(agent: Agent, args: dict[str, Any]) -> list[str]:
    argv, cmd = args.get("argv"), args.get("cmd")
    if (argv is None) == (cmd is None):
        raise errors.invalid("give exactly one of argv (list of strings) or cmd (string)")
    if cmd is not None:
        if not isinstance(cmd, str):
            raise errors.invalid("cmd must be a string")
        return [agent.shell, "-c", cmd]
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise errors.invalid("argv must be a non-empty list of strings")
    return argv


def _working_dir(agent: Agent, cwd: object, run_as: users.RunAs | None) -> str:
    """The process's directory: the caller's, or the agent's workdir, or for a user who
    may not enter that (root's home, usually), the user's home, or at last `/`.

    The child changes directory before it changes user, so a directory the user may not
    enter is refused here rather than handed to it.
    """
    if cwd is not None:
        path = files.resolve(cwd, agent.workdir)
        if run_as is not None and os.path.isdir(path) and not run_as.can_enter(path):
            raise errors.operation_failed(f"permission denied for user {run_as.name}", path)
        return path
    if run_as is None or run_as.can_enter(agent.workdir):
        return agent.workdir
    return run_as.home if run_as.can_enter(run_as.home) else "/"


def _environment(agent: Agent, extra: object, run_as: users.RunAs | None) -> dict[str, str]:
    """The agent's environment, then what a login of `run_as` sets, then the caller's."""
    base = agent.base_env if run_as is None else {**agent.base_env, **run_as.environment()}
    if extra is None:
        return base
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k for k, v in extra.items()
    ):
        raise errors.invalid("env must map variable names to strings")
    return {**base, **extra}


# -- files --------------------------------------------------------------------------


async def read_file(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    """Stream a file as data frames, as fast as the client grants credit."""
    path = files.resolve(args.get("path"), agent.workdir)
    fd = files.open_for_read(path)
    size = 0
    try:
        while True:
            await stream.send_window.wait()
            try:
                chunk = os.read(fd, CHUNK_SIZE)
            except OSError as exc:
                raise errors.from_oserror(exc, path) from None
            if not chunk:
                break
            stream.send_data(chunk)
            size += len(chunk)
            await stream.drain()
    finally:
        os.close(fd)
    return {"size": size}


async def write_file(agent: Agent, stream: Stream, args: dict[str, Any]) -> EntryInfo:
    """Receive data frames into a temporary file, renamed into place at the end frame."""
    path = files.resolve(args.get("path"), agent.workdir)
    mode = args.get("mode")
    if mode is not None and (not isinstance(mode, int) or not 0 <= mode <= 0o7777):
        raise errors.invalid("mode must be permission bits between 0 and 0o7777")
    writer = files.AtomicWriter(path, mode)
    try:
        while True:
            frame = await stream.inbox.get()
            if frame.type == DATA:
                writer.write(frame.payload)
                stream.consumed(len(frame.payload))
            elif frame.type == END:
                return writer.commit()
    except BaseException:
        writer.abort()
        raise


async def list_dir(agent: Agent, stream: Stream, args: dict[str, Any]) -> list[EntryInfo]:
    path = files.resolve(args.get("path"), agent.workdir)
    depth = args.get("depth", 1)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise errors.invalid("depth must be an integer of at least 1")
    # A big tree takes a while to walk; the other streams should not wait for it.
    return await asyncio.to_thread(files.list_dir, path, depth)


async def stat(agent: Agent, stream: Stream, args: dict[str, Any]) -> EntryInfo:
    return files.stat_entry(files.resolve(args.get("path"), agent.workdir))


async def mkdir(agent: Agent, stream: Stream, args: dict[str, Any]) -> EntryInfo:
    path = files.resolve(args.get("path"), agent.workdir)
    return files.make_dir(path, parents=_flag(args, "parents"))


async def remove(agent: Agent, stream: Stream, args: dict[str, Any]) -> None:
    path = files.resolve(args.get("path"), agent.workdir)
    if _flag(args, "recursive"):
        await asyncio.to_thread(files.remove, path, True)
    else:
        files.remove(path)


async def replace(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    path = files.resolve(args.get("path"), agent.workdir)
    old, new, count = args.get("old"), args.get("new"), args.get("count")
    if not isinstance(old, str) or not isinstance(new, str):
        raise errors.invalid("old and new must be strings")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        raise errors.invalid("count must be an integer")
    return {"replaced": await asyncio.to_thread(files.replace_text, path, old, new, count)}


# -- argument checks ----------------------------------------------------------------


def _flag(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise errors.invalid(f"{name} must be a boolean")
    return value


def _optional_number(args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise errors.invalid(f"{name} must be a positive number of seconds")
    return float(value)
