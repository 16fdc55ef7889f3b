"""Pseudo-terminals for processes that want one: allocation, controlling tty, window size.

Imported only when a process asks for a terminal, so `fcntl` and `termios` cost nothing
to the agent's start.
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios

DEFAULT_TERM = "xterm-256color"
EOF_BYTE = b"\x04"
"""What "close stdin" means on a terminal: the VEOF character (^D) in canonical mode."""


def open_terminal(cols: int, rows: int) -> tuple[int, int]:
    """A (master, slave) pair sized cols x rows; both close on exec."""
    master, slave = os.openpty()
    try:
        set_size(slave, cols, rows)
    except OSError:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set the window size; the kernel sends SIGWINCH to the terminal's foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def take_controlling_terminal() -> None:
    """Run in the child between fork and exec, after setsid: stdin becomes its tty.

    Without a controlling terminal a shell has no job control and ^C reaches nobody.
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
