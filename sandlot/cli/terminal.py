"""The local terminal joined to a remote one: keys out, output in, sizes kept in step.

The main thread copies the process's output to stdout; a helper thread copies stdin to
the process and passes on window-size changes, which the SIGWINCH handler signals
through a pipe (a signal handler must not write to the socket itself). A local
terminal is put in raw mode, so Ctrl-C and friends reach the remote shell, and is
always restored on the way out.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sandlot.errors import SandlotError

if TYPE_CHECKING:
    from sandlot.sdk import CommandResult, PtyHandle

DEFAULT_COLS = 120
DEFAULT_ROWS = 40
_READ_SIZE = 64 * 1024


def terminal_size() -> tuple[int, int]:
    """(columns, rows) of the local terminal, or a default when there is none.

    Asks the terminal itself: COLUMNS and LINES in the environment (which
    shutil.get_terminal_size prefers) are a snapshot a shell may export, and go stale at
    the first resize.
    """
    for stream in (sys.stdout, sys.stdin, sys.stderr):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        if size.columns and size.lines:
            return size.columns, size.lines
    return DEFAULT_COLS, DEFAULT_ROWS


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Raw mode on `fd` while the block runs, when `fd` is a terminal."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_terminal(handle: PtyHandle) -> CommandResult:
    """Join the local terminal to `handle` until its process exits; its result."""
    stdin_fd = sys.stdin.fileno()
    interactive = os.isatty(stdin_fd)
    wake_read, wake_write = os.pipe()
    pump = threading.Thread(
        target=_pump_input,
        args=(handle, stdin_fd, wake_read, interactive),
        name="sandlot-terminal-input",
        daemon=True,
    )
    previous = None
    if interactive and hasattr(signal, "SIGWINCH"):
        previous = signal.signal(signal.SIGWINCH, lambda *_: os.write(wake_write, b"w"))
    try:
        with raw_mode(stdin_fd):
            pump.start()
            out = sys.stdout.buffer
            for chunk in handle.stream():
                out.write(chunk.data)
                out.flush()
            return handle.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        os.close(wake_write)  # the helper sees end-of-file on its pipe and stops


def _pump_input(handle: PtyHandle, stdin_fd: int, wake: int, interactive: bool) -> None:
    stdin_open = True
    try:
        while True:
            watched = [wake, stdin_fd] if stdin_open else [wake]
            ready, _, _ = select.select(watched, [], [])
            if wake in ready:
                if not os.read(wake, 64):
                    return
                handle.resize(*terminal_size())
            if stdin_fd in ready:
                data = os.read(stdin_fd, _READ_SIZE)
                if data:
                    handle.send(data)
                else:
                    stdin_open = False
                    if not interactive:
                        handle.close_stdin()
    except (SandlotError, OSError, ValueError):
        # The process ended or the attachment closed; the main thread reports it.
        return
    finally:
        os.close(wake)
