"""Processes the agent starts, each a record with an id that outlives any one connection.

A `ManagedProcess` owns its pipes (or its terminal) and its exit: output is read from
non-blocking descriptors by the event loop and handed to every attached listener, stdin
is written as the pipe accepts it, and the exit status arrives from the reaper. Each
process leads its own session and process group, so a timeout or a kill reaches
everything it started.

Two kinds share that machinery:

- run-and-wait (`exec`): the request's stream is the one listener; after its connection
  dropped the output is discarded and the process runs on.
- background (`start`): output also goes to a bounded scrollback, clients attach and
  detach at will, and the process is kept (with its scrollback and result) for a while
  after it exited so that a late attach still sees how it ended.

A listener that cannot keep up *holds* the output: while any hold is in place the agent
stops reading the process's descriptors, so the process blocks on a full pipe instead
of the agent buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import signal
import subprocess
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import errors
from .protocol import ProcessInfo
from .reaper import Reaper
from .scrollback import Scrollback
from .users import RunAs

OUTPUT_READ_SIZE = 256 * 1024
EXIT_OUTPUT_GRACE = 0.1
"""Seconds to keep reading output after the process exited, for what is still in its pipes.

A background child that inherited the pipes can hold them open forever; after this grace
the process counts as finished anyway.
"""

STDOUT = "stdout"
STDERR = "stderr"
PTY = "pty"

RETAIN_EXITED_SECONDS = 300.0
RETAIN_EXITED_COUNT = 100
"""An exited background process is forgotten after this long, or once this many newer
ones exited, whichever comes first."""


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


@dataclass(frozen=True)
class Terminal:
    cols: int
    rows: int


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


_FIRST_ATTACH = object()
"""Holds a new process's output until its first attachment (see `hold_until_attach`)."""


class ManagedProcess:
    def __init__(
        self,
        process_id: str,
        popen: subprocess.Popen[bytes],
        *,
        command: str | list[str],
        cwd: str,
        outputs: dict[str, int],
        stdin_fd: int | None,
        timeout: float | None,
        on_finished: Callable[[ManagedProcess], None],
        terminal: bool = False,
        scrollback: Scrollback | None = None,
        linger: float | None = None,
        hold_until_attach: float | None = None,
    ) -> None:
        self.id = process_id
        self.pid = popen.pid
        self.command = command
        self.cwd = cwd
        self.terminal = terminal
        self.scrollback = scrollback
        """None for run-and-wait processes: only background ones keep their output."""
        self.started_at = time.time()
        self._popen = popen
        self._loop = asyncio.get_running_loop()
        self._started = time.monotonic()
        self._on_finished = on_finished
        self._outputs = dict(outputs)
        self._listeners: list[OutputListener] = []
        self._holds: set[object] = set()
        self._stdin_fd = stdin_fd
        self._stdin_pending: deque[tuple[memoryview, Callable[[int], None]]] = deque()
        self._stdin_waiting = False
        self._stdin_close_requested = False
        self._status: int | None = None
        self._ended = 0.0
        self._timed_out = False
        self._grace: asyncio.TimerHandle | None = None
        self._timer = self._loop.call_later(timeout, self._on_timeout) if timeout else None
        self._linger = linger
        self._linger_timer: asyncio.TimerHandle | None = None
        self.finished: asyncio.Future[ExitInfo] = self._loop.create_future()
        for name, fd in self._outputs.items():
            self._loop.add_reader(fd, self._on_readable, name, fd)
        self._arm_linger()
        self._first_attach: asyncio.TimerHandle | None = None
        if hold_until_attach:
            # The client that started it is about to attach: let the output wait for it
            # (the process blocks on a full pipe) rather than scroll out of the ring.
            self.hold_output(_FIRST_ATTACH)
            self._first_attach = self._loop.call_later(
                hold_until_attach, self.release_output, _FIRST_ATTACH
            )

    @property
    def exited(self) -> bool:
        return self._status is not None

    def info(self) -> ProcessInfo:
        """What the API reports about the process (exit fields None while it runs)."""
        result = self.finished.result() if self.finished.done() else None
        return {
            "process_id": self.id,
            "pid": self.pid,
            "command": self.command,
            "cwd": self.cwd,
            "pty": self.terminal,
            "started_at": self.started_at,
            "status": "running" if result is None else "exited",
            "exit_code": None if result is None else result.exit_code,
            "signal": None if result is None else result.signal,
            "duration_ms": None if result is None else result.duration_ms,
            "timed_out": None if result is None else result.timed_out,
        }

    # -- output -----------------------------------------------------------------------

    def attach(self, listener: OutputListener) -> None:
        self._listeners.append(listener)
        if self._first_attach is not None:
            self._first_attach.cancel()
            self._first_attach = None
            self.release_output(_FIRST_ATTACH)
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def detach(self, listener: OutputListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
            if not self._listeners:
                self._arm_linger()
        self.release_output(listener)

    def hold_output(self, holder: object) -> None:
        """Stop reading the process's output until `holder` releases it; the process blocks."""
        if not self._holds:
            for fd in self._outputs.values():
                self._loop.remove_reader(fd)
        self._holds.add(holder)

    def release_output(self, holder: object) -> None:
        if holder not in self._holds:
            return
        self._holds.discard(holder)
        if not self._holds:
            for name, fd in self._outputs.items():
                self._loop.add_reader(fd, self._on_readable, name, fd)

    def _on_readable(self, name: str, fd: int) -> None:
        data = self._read_available(fd)
        if data is None:
            return
        if not data:
            self._close_output(name)
            self._finish_if_done()
            return
        if self.scrollback is not None:
            self.scrollback.append(name, data)
        for listener in tuple(self._listeners):
            listener.output(name, data)

    def _read_available(self, fd: int) -> bytes | None:
        """What the descriptor has now (b"" at its end, None if nothing after all).

        A terminal hands out a few KiB per read, so it is read until it runs dry (within
        one read size); a pipe gives its whole buffer at once.
        """
        parts: list[bytes] = []
        size = 0
        while size < OUTPUT_READ_SIZE:
            try:
                data = os.read(fd, OUTPUT_READ_SIZE - size)
            except BlockingIOError:
                break
            except OSError:
                data = b""  # EIO: a terminal whose every slave end is closed
            if not data:
                if parts:
                    break  # the end shows again on the next call, after this data
                return b""
            parts.append(data)
            size += len(data)
            if not self.terminal:
                break
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _close_output(self, name: str) -> None:
        fd = self._outputs.pop(name)
        if not self._holds:
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
        """Close stdin once everything queued was written (on a terminal: send ^D)."""
        if self.terminal:
            from .terminal import EOF_BYTE

            self.write_stdin(EOF_BYTE, lambda n: None)
            return
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

    def signal_group(self, signum: int) -> None:
        """Signal the process group while its leader runs; afterwards the pgid may be reused."""
        if self._status is None:
            self.kill_group(signum)

    def resize(self, cols: int, rows: int) -> None:
        if not self.terminal:
            raise errors.invalid(f"process {self.id} has no terminal to resize")
        fd = self._stdin_fd  # the terminal's master side, open while the process runs
        if fd is None:
            return
        from .terminal import set_size

        with contextlib.suppress(OSError):
            set_size(fd, cols, rows)

    def _arm_linger(self) -> None:
        """Kill the process `linger` seconds from now unless someone attaches first."""
        if self._linger is None or self._status is not None or self._linger_timer is not None:
            return
        self._linger_timer = self._loop.call_later(self._linger, self._on_linger)

    def _on_linger(self) -> None:
        self._linger_timer = None
        if not self._listeners:
            self.signal_group(signal.SIGKILL)

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
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._drop_stdin()
        if self._outputs:
            self._grace = self._loop.call_later(EXIT_OUTPUT_GRACE, self._on_grace)
        self._finish_if_done()

    def _on_grace(self) -> None:
        self._grace = None
        if self._holds:
            # A listener is slow, not the pipes idle: wait for it before giving up.
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
    """Every process the agent started that has not finished yet, and the background
    processes that finished recently, by id."""

    def __init__(
        self,
        reaper: Reaper,
        retain_seconds: float = RETAIN_EXITED_SECONDS,
        retain_count: int = RETAIN_EXITED_COUNT,
    ) -> None:
        self._reaper = reaper
        self._processes: dict[str, ManagedProcess] = {}
        self._background: set[str] = set()
        self._exited: OrderedDict[str, tuple[float, ManagedProcess]] = OrderedDict()
        """Exited background processes, oldest exit first, with when they finished."""
        self._retain_seconds = retain_seconds
        self._retain_count = retain_count
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._processes)

    def get(self, process_id: str) -> ManagedProcess | None:
        return self._processes.get(process_id)

    def find(self, process_id: object) -> ManagedProcess:
        """A background process, running or retained after its exit."""
        if not isinstance(process_id, str):
            raise errors.invalid("process_id must be a string")
        self._prune()
        proc = self._processes.get(process_id) if process_id in self._background else None
        if proc is None and process_id in self._exited:
            proc = self._exited[process_id][1]
        if proc is None:
            message = f"no such process: {process_id}"
            raise errors.AgentError(errors.PROCESS_NOT_FOUND, message, {"process_id": process_id})
        return proc

    def background(self, include_exited: bool = False) -> list[ManagedProcess]:
        """Background processes in the order they started."""
        self._prune()
        running = [self._processes[pid] for pid in self._background if pid in self._processes]
        found = running + ([proc for _, proc in self._exited.values()] if include_exited else [])
        return sorted(found, key=lambda proc: int(proc.id))

    def spawn(
        self,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        stdin: bool,
        timeout: float | None,
        run_as: RunAs | None = None,
    ) -> ManagedProcess:
        """Start a run-and-wait process in its own session with piped output (and stdin)."""
        return self._start(
            argv, argv, cwd=cwd, env=env, stdin=stdin, timeout=timeout, run_as=run_as
        )

    def start_background(
        self,
        argv: list[str],
        *,
        command: str | list[str],
        cwd: str,
        env: dict[str, str],
        timeout: float | None,
        terminal: Terminal | None,
        scrollback: int,
        linger: float | None,
        hold_until_attach: float | None = None,
        run_as: RunAs | None = None,
    ) -> ManagedProcess:
        """Start a background process: stdin piped (or a terminal), output kept in scrollback."""
        proc = self._start(
            argv,
            command,
            cwd=cwd,
            env=env,
            stdin=True,
            timeout=timeout,
            terminal=terminal,
            scrollback=Scrollback(scrollback),
            linger=linger,
            hold_until_attach=hold_until_attach,
            run_as=run_as,
        )
        self._background.add(proc.id)
        return proc

    def _start(
        self,
        argv: list[str],
        command: str | list[str],
        *,
        cwd: str,
        env: dict[str, str],
        stdin: bool,
        timeout: float | None,
        terminal: Terminal | None = None,
        scrollback: Scrollback | None = None,
        linger: float | None = None,
        hold_until_attach: float | None = None,
        run_as: RunAs | None = None,
    ) -> ManagedProcess:
        stdin_fd: int | None
        if terminal is not None:
            popen, outputs, stdin_fd = _popen_on_terminal(argv, cwd, env, terminal, run_as)
        else:
            popen, outputs, stdin_fd = _popen_with_pipes(argv, cwd, env, stdin, run_as)
        _oom_before_the_agent(popen.pid)
        proc = ManagedProcess(
            str(next(self._ids)),
            popen,
            command=command,
            cwd=cwd,
            outputs=outputs,
            stdin_fd=stdin_fd,
            timeout=timeout,
            on_finished=self._on_finished,
            terminal=terminal is not None,
            scrollback=scrollback,
            linger=linger,
            hold_until_attach=hold_until_attach,
        )
        self._reaper.watch(proc.pid, proc.on_exit)
        self._processes[proc.id] = proc
        return proc

    def kill_all(self) -> None:
        for proc in list(self._processes.values()):
            proc.kill_group()

    def _on_finished(self, proc: ManagedProcess) -> None:
        self._processes.pop(proc.id, None)
        if proc.id in self._background:
            self._background.discard(proc.id)
            self._exited[proc.id] = (time.monotonic(), proc)
            self._prune()
            loop = asyncio.get_running_loop()
            loop.call_later(self._retain_seconds + 0.01, self._prune)

    def _prune(self) -> None:
        horizon = time.monotonic() - self._retain_seconds
        while self._exited:
            finished_at, _ = next(iter(self._exited.values()))
            if len(self._exited) <= self._retain_count and finished_at > horizon:
                break
            self._exited.popitem(last=False)


OOM_SCORE_ADJ = "500"


def _oom_before_the_agent(pid: int) -> None:
    """Make the sandbox's memory killer pick a command (and what it starts, which
    inherits this) before the agent: killing PID 1 would take the whole sandbox down.
    Raising the score needs no privilege; lowering the agent's would."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w") as f:
        f.write(OOM_SCORE_ADJ)


def _popen_with_pipes(
    argv: list[str], cwd: str, env: dict[str, str], stdin: bool, run_as: RunAs | None
) -> tuple[subprocess.Popen[bytes], dict[str, int], int | None]:
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if stdin else (-1, -1)
    child_ends = [fd for fd in (out_w, err_w, in_r) if fd >= 0]
    parent_ends = [fd for fd in (out_r, err_r, in_w) if fd >= 0]
    _hand_over(child_ends, run_as)
    try:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=in_r if stdin else subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            **_identity(run_as),
        )
    except OSError as exc:
        _close_all(parent_ends)
        raise _spawn_error(exc, argv, cwd, run_as) from None
    finally:
        _close_all(child_ends)
    for fd in parent_ends:
        os.set_blocking(fd, False)
    return popen, {STDOUT: out_r, STDERR: err_r}, in_w if stdin else None


def _popen_on_terminal(
    argv: list[str], cwd: str, env: dict[str, str], size: Terminal, run_as: RunAs | None
) -> tuple[subprocess.Popen[bytes], dict[str, int], int]:
    from . import terminal

    master, slave = terminal.open_terminal(size.cols, size.rows)
    _hand_over([slave], run_as)
    try:
        # The child takes its terminal after the switch of user (preexec_fn runs last).
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=terminal.take_controlling_terminal,
            **_identity(run_as),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        os.close(master)
        if isinstance(exc, OSError):
            raise _spawn_error(exc, argv, cwd, run_as) from None
        raise errors.AgentError(errors.INTERNAL, f"could not start on a terminal: {exc}") from None
    finally:
        os.close(slave)  # else reading the master never sees the end (EIO)
    os.set_blocking(master, False)
    # Output is read from the master and stdin written to it; each side closes its own
    # descriptor when it is done.
    return popen, {PTY: master}, os.dup(master)


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def _identity(run_as: RunAs | None) -> dict[str, Any]:
    """Popen's arguments that switch the child to `run_as` (none keeps the agent's root)."""
    if run_as is None:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)}


def _hand_over(fds: Sequence[int], run_as: RunAs | None) -> None:
    """Give the child's pipes or terminal to its user.

    The process holds them open either way, but whatever reopens them by name
    (`> /dev/stderr`, `tty`, `ssh` asking for a password) is checked against their owner,
    which is the agent's root until changed.
    """
    if run_as is None or run_as.uid == 0:
        return
    for fd in fds:
        with contextlib.suppress(OSError):
            os.fchown(fd, run_as.uid, -1)


def _failed_to_switch(exc: OSError, cwd: str) -> bool:
    """Whether the child failed to take its user's ids (e.g. one outside the sandbox's
    user namespace) rather than to enter `cwd` or to exec.

    Python reports every failure before exec as one of chdir (3.11 names `cwd`, later
    versions no file); only setgroups, setregid and setreuid fail with these codes, and
    not on a directory that exists.
    """
    return (
        exc.filename in (None, cwd)
        and exc.errno in (errno.EINVAL, errno.EPERM)
        and os.path.isdir(cwd)
    )


def _spawn_error(
    exc: OSError, argv: list[str], cwd: str, run_as: RunAs | None = None
) -> errors.AgentError:
    if run_as is not None and _failed_to_switch(exc, cwd):
        reason = (exc.strerror or "failed").lower()
        message = f"cannot run as user {run_as.name} (uid {run_as.uid}, gid {run_as.gid}): {reason}"
        return errors.invalid(message)
    if exc.filename == cwd or not os.path.isdir(cwd):
        if isinstance(exc, FileNotFoundError):
            message = f"working directory does not exist: {cwd}"
            return errors.AgentError(errors.FILE_NOT_FOUND, message, {"path": cwd})
        return errors.from_oserror(exc, cwd)
    if isinstance(exc, FileNotFoundError):
        message = f"command not found: {argv[0]}"
        return errors.AgentError(errors.FILE_NOT_FOUND, message, {"path": argv[0]})
    return errors.from_oserror(exc, argv[0])
