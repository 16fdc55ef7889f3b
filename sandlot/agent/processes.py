"""Processes the agent starts, each a record with an id that outlives any one connection.

A `ManagedProcess` owns its pipes and its exit: output is read from non-blocking pipes by
the event loop and handed to whichever listener is attached (the stream of the request
that started it; none after that connection dropped, when output is discarded and the
process keeps running), stdin is written as the pipe accepts it, and the exit status
arrives from the reaper. Each process leads its own session and process group, so a
timeout or a kill reaches everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .reaper import Reaper

OUTPUT_READ_SIZE = 256 * 1024
EXIT_OUTPUT_GRACE = 0.1
"""Seconds to keep reading output after the process exited, for what is still in its pipes.

A background child that inherited the pipes can hold them open forever; after this grace
the process counts as finished anyway.
"""

STDOUT = "stdout"
STDERR = "stderr"


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int | None
    signal: str | None
    duration_ms: float
    timed_out: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "duration_ms": self.duration_ms,
            "timed_out": self.timed_out,
        }


class OutputListener(Protocol):
    def output(self, fd: str, data: bytes) -> None: ...


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def parse_signal(name: object) -> int:
    """A signal number from "SIGTERM", "TERM" or 15."""
    if isinstance(name, bool) or not isinstance(name, (int, str)):
        raise errors.invalid(f"not a signal: {name!r}")
    if isinstance(name, int):
        if name <= 0 or name >= signal.NSIG:
            raise errors.invalid(f"no such signal: {name}")
        return name
    upper = name.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    try:
        return int(signal.Signals[upper])
    except KeyError:
        raise errors.invalid(f"no such signal: {name}") from None


class ManagedProcess:
    def __init__(
        self,
        process_id: str,
        popen: subprocess.Popen[bytes],
        *,
        outputs: dict[str, int],
        stdin_fd: int | None,
        timeout: float | None,
        on_finished: Callable[[ManagedProcess], None],
    ) -> None:
        self.id = process_id
        self.pid = popen.pid
        self._popen = popen
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._on_finished = on_finished
        self._outputs = dict(outputs)
        self._listener: OutputListener | None = None
        self._paused = False
        self._stdin_fd = stdin_fd
        self._stdin_pending: deque[tuple[memoryview, Callable[[int], None]]] = deque()
        self._stdin_waiting = False
        self._stdin_close_requested = False
        self._status: int | None = None
        self._ended = 0.0
        self._timed_out = False
        self._grace: asyncio.TimerHandle | None = None
        self._timer = self._loop.call_later(timeout, self._on_timeout) if timeout else None
        self.finished: asyncio.Future[ExitInfo] = self._loop.create_future()
        for name, fd in self._outputs.items():
            self._loop.add_reader(fd, self._on_readable, name, fd)

    @property
    def exited(self) -> bool:
        return self._status is not None

    # -- output -----------------------------------------------------------------------

    def attach(self, listener: OutputListener) -> None:
        self._listener = listener

    def detach(self, listener: OutputListener) -> None:
        if self._listener is listener:
            self._listener = None
            self.resume_output()

    def pause_output(self) -> None:
        """Stop reading the pipes (the listener's peer is out of credit); the process blocks."""
        if not self._paused:
            self._paused = True
            for fd in self._outputs.values():
                self._loop.remove_reader(fd)

    def resume_output(self) -> None:
        if self._paused:
            self._paused = False
            for name, fd in self._outputs.items():
                self._loop.add_reader(fd, self._on_readable, name, fd)

    def _on_readable(self, name: str, fd: int) -> None:
        try:
            data = os.read(fd, OUTPUT_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_output(name)
            self._finish_if_done()
        elif self._listener is not None:
            self._listener.output(name, data)

    def _close_output(self, name: str) -> None:
        fd = self._outputs.pop(name)
        if not self._paused:
            self._loop.remove_reader(fd)
        os.close(fd)

    # -- stdin ------------------------------------------------------------------------

    def write_stdin(self, data: bytes, on_written: Callable[[int], None]) -> None:
        """Queue `data` for the process; `on_written(n)` reports bytes taken (or dropped)."""
        if self._stdin_fd is None:
            on_written(len(data))
            return
        self._stdin_pending.append((memoryview(data), on_written))
        self._flush_stdin()

    def close_stdin(self) -> None:
        """Close stdin once everything queued was written."""
        self._stdin_close_requested = True
        self._flush_stdin()

    def _flush_stdin(self) -> None:
        fd = self._stdin_fd
        if fd is None:
            return
        while self._stdin_pending:
            view, on_written = self._stdin_pending[0]
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                if not self._stdin_waiting:
                    self._stdin_waiting = True
                    self._loop.add_writer(fd, self._flush_stdin)
                return
            except OSError:
                # The process closed its end: what it will never read is dropped.
                self._drop_stdin()
                return
            on_written(n)
            if n < len(view):
                self._stdin_pending[0] = (view[n:], on_written)
            else:
                self._stdin_pending.popleft()
        if self._stdin_waiting:
            self._stdin_waiting = False
            self._loop.remove_writer(fd)
        if self._stdin_close_requested:
            self._drop_stdin()

    def _drop_stdin(self) -> None:
        fd = self._stdin_fd
        if fd is None:
            return
        self._stdin_fd = None
        if self._stdin_waiting:
            self._stdin_waiting = False
            self._loop.remove_writer(fd)
        os.close(fd)
        pending, self._stdin_pending = self._stdin_pending, deque()
        for view, on_written in pending:
            on_written(len(view))

    # -- signals and exit -------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        if self._status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the pgid outlives its leader while members remain)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._status is None:
            self._timed_out = True
            self.kill_group()

    def on_exit(self, status: int) -> None:
        """Called by the reaper with the wait status."""
        self._status = status
        self._ended = time.monotonic()
        # Keep subprocess from ever waiting on this pid itself (it might be reused by then).
        self._popen.returncode = os.waitstatus_to_exitcode(status)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_stdin()
        if self._outputs:
            self._grace = self._loop.call_later(EXIT_OUTPUT_GRACE, self._on_grace)
        self._finish_if_done()

    def _on_grace(self) -> None:
        self._grace = None
        if self._paused:
            # The listener is slow, not the pipes idle: wait for it before giving up.
            self._grace = self._loop.call_later(EXIT_OUTPUT_GRACE, self._on_grace)
            return
        for name in list(self._outputs):
            self._close_output(name)
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        status = self._status
        if status is None or self._outputs or self.finished.done():
            return
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if os.WIFSIGNALED(status):
            exit_code, sig = None, signal_name(os.WTERMSIG(status))
        else:
            exit_code, sig = os.waitstatus_to_exitcode(status), None
        info = ExitInfo(
            exit_code=exit_code,
            signal=sig,
            duration_ms=round((self._ended - self._started) * 1000, 3),
            timed_out=self._timed_out,
        )
        self.finished.set_result(info)
        self._on_finished(self)


class ProcessTable:
    """Every process the agent started and that has not finished yet, by id."""

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper
        self._processes: dict[str, ManagedProcess] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._processes)

    def get(self, process_id: str) -> ManagedProcess | None:
        return self._processes.get(process_id)

    def spawn(
        self,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        stdin: bool,
        timeout: float | None,
    ) -> ManagedProcess:
        """Start `argv` in its own session with piped output (and stdin, if asked)."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (-1, -1)
        child_ends = [fd for fd in (out_w, err_w, in_r) if fd >= 0]
        parent_ends = [fd for fd in (out_r, err_r, in_w) if fd >= 0]
        try:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=in_r if stdin else subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in parent_ends:
                os.close(fd)
            raise _spawn_error(exc, argv, cwd) from None
        finally:
            for fd in child_ends:
                os.close(fd)
        for fd in parent_ends:
            os.set_blocking(fd, False)
        proc = ManagedProcess(
            str(next(self._ids)),
            popen,
            outputs={STDOUT: out_r, STDERR: err_r},
            stdin_fd=in_w if stdin else None,
            timeout=timeout,
            on_finished=self._forget,
        )
        self._reaper.watch(proc.pid, proc.on_exit)
        self._processes[proc.id] = proc
        return proc

    def kill_all(self) -> None:
        for proc in list(self._processes.values()):
            proc.kill_group()

    def _forget(self, proc: ManagedProcess) -> None:
        self._processes.pop(proc.id, None)


def _spawn_error(exc: OSError, argv: list[str], cwd: str) -> errors.AgentError:
    if exc.filename == cwd or not os.path.isdir(cwd):
        if isinstance(exc, FileNotFoundError):
            message = f"working directory does not exist: {cwd}"
            return errors.AgentError(errors.FILE_NOT_FOUND, message, {"path": cwd})
        return errors.from_oserror(exc, cwd)
    if isinstance(exc, FileNotFoundError):
        message = f"command not found: {argv[0]}"
        return errors.AgentError(errors.FILE_NOT_FOUND, message, {"path": argv[0]})
    return errors.from_oserror(exc, argv[0])
