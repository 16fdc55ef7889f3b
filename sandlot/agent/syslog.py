"""The sandbox's system log: a syslog socket, its parser, and a ring of recent lines.

Programs in the sandbox log as they would anywhere: `logger`, syslog(3), Python's
SysLogHandler all write datagrams to `/dev/log`. The agent, PID 1, owns that socket and
keeps the lines in a bounded ring until the host follows them (op `follow_log`); lines
written while nobody listens (before the first follower, or while the agent is quiesced
around a checkpoint) wait there, and a follower resumes after the last line handed out,
so the host neither misses nor repeats a line across reconnects.

Where the socket lives: the sandbox's /dev is a tmpfs the container's mount namespace
owns, and the agent is root in the sandbox's user namespace, so it binds `/dev/log`
there directly: no bind mount from the host and no symlink a program could replace.
CRIU cannot restore a socket bound to a path in the sandbox, so the socket is closed with
the agent's own before a checkpoint and bound again after (a writer in that moment gets
an error, as with any syslog daemon restarting; a program holding a connected socket,
like SysLogHandler or syslog(3), reconnects on its next line).

A chatty sandbox cannot flood the host: each line is cut at `MAX_LINE` bytes, and past
`rate` lines in a second the rest are dropped and counted, then reported in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import stat
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 8 * 1024
"""Bytes of a message kept; the rest of a longer one is cut."""
MAX_DATAGRAM = 64 * 1024
RING_LINES = 2000
RING_BYTES = 1024 * 1024
RATE = 200
"""Lines a second accepted; more in the same second are dropped and counted."""
BATCH_BYTES = 256 * 1024
"""Text per `log` event frame sent to a follower (JSON may grow it a few times)."""
READS_PER_TURN = 256
"""Datagrams read per turn of the event loop, so a flood cannot starve the agent's clients."""

SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
DEFAULT_PRIORITY = 13  # user.notice, as syslog(3) assumes when none is given

_PRIORITY = re.compile(rb"<(\d{1,3})>")
_BSD_TIMESTAMP = re.compile(rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")
_TAG = re.compile(rb"([^\s:\[\]]{1,64})(?:\[(\d+)\])?: ?")


@dataclass(frozen=True)
class Record:
    severity: str
    facility: str
    tag: str
    message: str


def parse(datagram: bytes) -> Record:
    """One syslog datagram as RFC 3164 (syslog(3), `logger`) or RFC 5424 (`logger
    --rfc5424`) writes it; anything else is kept whole as a user.notice message."""
    data = datagram.rstrip(b"\x00\r\n")
    priority = DEFAULT_PRIORITY
    match = _PRIORITY.match(data)
    if match is not None and int(match[1]) < len(FACILITIES) * 8:
        priority = int(match[1])
        data = data[match.end() :]
    if data.startswith(b"1 "):
        tag, body = _rfc5424(data[2:])
    else:
        tag, body = _rfc3164(data)
    text = body[:MAX_LINE].decode("utf-8", "replace")
    return Record(SEVERITIES[priority & 7], FACILITIES[priority >> 3], tag, text)


def _rfc3164(data: bytes) -> tuple[str, bytes]:
    stamped = _BSD_TIMESTAMP.match(data)
    if stamped is not None:
        data = data[stamped.end() :]
    tag = _TAG.match(data)
    if tag is None and stamped is not None:
        # A hostname may follow the timestamp (a relayed line): `host tag[pid]: text`.
        host, _, rest = data.partition(b" ")
        tag = _TAG.match(rest) if host else None
        if tag is not None:
            data = rest
    if tag is None:
        return "", data
    return tag[1].decode("utf-8", "replace"), data[tag.end() :]


def _rfc5424(data: bytes) -> tuple[str, bytes]:
    """`TIMESTAMP HOST APP PROCID MSGID [SD...] MSG` (after the `1 ` version)."""
    fields = data.split(b" ", 5)
    if len(fields) < 5:
        return "", data
    app = fields[2]
    rest = fields[5] if len(fields) == 6 else b""
    rest = _skip_structured_data(rest)
    tag = "" if app == b"-" else app.decode("utf-8", "replace")
    return tag, rest.removeprefix(b"\xef\xbb\xbf")


def _skip_structured_data(data: bytes) -> bytes:
    if data.startswith(b"-"):
        return data[2:]
    i = 0
    while i < len(data) and data[i : i + 1] == b"[":
        i += 1
        while i < len(data) and data[i : i + 1] != b"]":
            i += 2 if data[i : i + 1] == b"\\" else 1
        i += 1
    return data[i:].removeprefix(b" ")


class LogRing:
    """Recent lines with sequence numbers, bounded in count and bytes, rate-limited.

    `delivered` is the last line handed to a follower: a new follower starts after it.
    """

    def __init__(
        self, max_lines: int = RING_LINES, max_bytes: int = RING_BYTES, rate: int = RATE
    ) -> None:
        self._lines: deque[dict[str, Any]] = deque()
        self._bytes = 0
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self.rate = rate
        self.next_seq = 1
        self.delivered = 0
        self.dropped = 0
        """Lines refused in the current second, reported once it is over."""
        self._window = 0.0
        self._in_window = 0
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, record: Record, now: float) -> bool:
        """Keep a line unless the second's allowance is spent; False if it was dropped."""
        if now - self._window >= 1.0:
            self.report_dropped(now)
            self._window, self._in_window = now, 0
        if self._in_window >= self.rate:
            self.dropped += 1
            return False
        self._in_window += 1
        self._store(record, now)
        return True

    def report_dropped(self, now: float) -> None:
        """Turn the count of dropped lines into one line of its own."""
        if not self.dropped:
            return
        note = f"dropped {self.dropped} log lines over the limit of {self.rate} a second"
        self.dropped = 0
        self._store(Record("warning", "syslog", "sandlot", note), now)

    def after(self, seq: int, max_bytes: int = BATCH_BYTES) -> tuple[list[dict[str, Any]], int]:
        """Lines after `seq` (up to about `max_bytes` of text), and how many lines after
        `seq` were already pushed out of the ring."""
        first = self._lines[0]["seq"] if self._lines else self.next_seq
        missed = max(first - seq - 1, 0)
        batch: list[dict[str, Any]] = []
        size = 0
        for line in self._lines:
            if line["seq"] <= seq:
                continue
            if batch and size + len(line["line"]) > max_bytes:
                break
            batch.append(line)
            size += len(line["line"])
        return batch, missed

    async def wait_after(self, seq: int) -> None:
        """Return once a line after `seq` is in the ring."""
        while self.next_seq - 1 <= seq:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _store(self, record: Record, now: float) -> None:
        line = {
            "seq": self.next_seq,
            "at": now,
            "severity": record.severity,
            "facility": record.facility,
            "tag": record.tag,
            "line": record.message,
        }
        self.next_seq += 1
        self._lines.append(line)
        self._bytes += len(record.message)
        while len(self._lines) > self._max_lines or self._bytes > self._max_bytes:
            self._bytes -= len(self._lines.popleft()["line"])
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class SyslogSocket:
    """The datagram socket programs log to, read on the agent's event loop."""

    def __init__(self, path: str, ring: LogRing) -> None:
        self.path = path
        self.ring = ring
        self._sock: socket.socket | None = None
        self._report: asyncio.TimerHandle | None = None

    def open(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # left by a previous agent
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o666)  # every user of the sandbox may log
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        if self._sock is None:
            return
        self._read()  # what writers already sent is theirs to keep
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        if self._report is not None:
            self._report.cancel()
            self._report = None

    def _read(self) -> None:
        assert self._sock is not None
        for _ in range(READS_PER_TURN):
            try:
                datagram = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("reading the syslog socket failed: %s", exc)
                return
            if not self.ring.add(parse(datagram), time.time()) and self._report is None:
                # Report the drops when the second is over, even if nothing more comes.
                self._report = asyncio.get_running_loop().call_later(1.0, self._report_dropped)

    def _report_dropped(self) -> None:
        self._report = None
        self.ring.report_dropped(time.time())
