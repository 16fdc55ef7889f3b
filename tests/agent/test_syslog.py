"""The agent's system log: parsing what syslog writers send, the ring, and the socket as
real programs (`logger`, Python's SysLogHandler) use it, followed through AgentClient."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest

from sandlot.agent.syslog import MAX_LINE, LogRing, Record, parse
from sandlot.runtime.agent_client import LogBatch

from .conftest import RunningAgent, connected, start_agent


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        # syslog(3) and `logger` on the local socket: no hostname.
        (b"<13>Nov 24 23:00:00 myapp: hello", Record("notice", "user", "myapp", "hello")),
        (b"<30>Nov  4 01:02:03 sshd[812]: ok", Record("info", "daemon", "sshd", "ok")),
        # A relayed line carries the hostname before the tag.
        (b"<11>Nov 24 23:00:00 box app[7]: bad", Record("err", "user", "app", "bad")),
        # RFC 5424 with and without structured data, and a BOM.
        (
            b"<155>1 2026-11-24T23:00:00Z box app5 42 - - the text",
            Record("err", "local3", "app5", "the text"),
        ),
        (
            b'<14>1 2026-11-24T23:00:00Z box a 1 m [x@1 k="v\\]"][y@2] \xef\xbb\xbfbody',
            Record("info", "user", "a", "body"),
        ),
        # Python's SysLogHandler: priority, message and a NUL.
        (b"<12>from python\x00", Record("warning", "user", "", "from python")),
        # No priority at all, or one out of range: kept whole as user.notice.
        (b"plain words", Record("notice", "user", "", "plain words")),
        (b"<999>odd", Record("notice", "user", "", "<999>odd")),
        (b"<13>bad \xff bytes\n", Record("notice", "user", "", "bad \ufffd bytes")),
    ],
)
def test_parse(datagram: bytes, expected: Record) -> None:
    assert parse(datagram) == expected


def test_parse_cuts_long_lines() -> None:
    record = parse(b"<13>t: " + b"x" * (MAX_LINE * 2))
    assert record.tag == "t"
    assert len(record.message) == MAX_LINE


def _line(text: str) -> Record:
    return Record("info", "user", "t", text)


def test_ring_numbers_lines_and_answers_from_a_cursor() -> None:
    ring = LogRing()
    for i in range(5):
        ring.add(_line(f"l{i}"), now=100.0)
    lines, missed = ring.after(2)
    assert [line["line"] for line in lines] == ["l2", "l3", "l4"]
    assert [line["seq"] for line in lines] == [3, 4, 5]
    assert missed == 0
    assert ring.after(5) == ([], 0)


def test_ring_is_bounded_and_counts_what_it_lost() -> None:
    ring = LogRing(max_lines=3, max_bytes=1000)
    for i in range(10):
        ring.add(_line(f"l{i}"), now=100.0)
    lines, missed = ring.after(0)
    assert [line["line"] for line in lines] == ["l7", "l8", "l9"]
    assert missed == 7
    by_bytes = LogRing(max_lines=100, max_bytes=25)
    for _ in range(10):
        by_bytes.add(_line("x" * 10), now=100.0)
    assert len(by_bytes.after(0)[0]) == 2


def test_ring_batches_by_size() -> None:
    ring = LogRing()
    for _ in range(10):
        ring.add(_line("y" * 100), now=1.0)
    first, _ = ring.after(0, max_bytes=250)
    assert len(first) == 2
    rest, _ = ring.after(first[-1]["seq"], max_bytes=10_000)
    assert len(rest) == 8


def test_ring_drops_past_the_rate_and_reports_the_count() -> None:
    ring = LogRing(rate=5)
    kept = [ring.add(_line(f"l{i}"), now=50.0 + i * 0.01) for i in range(12)]
    assert kept == [True] * 5 + [False] * 7
    ring.add(_line("next second"), now=51.5)
    lines = [line["line"] for line in ring.after(0)[0]]
    assert lines[:5] == [f"l{i}" for i in range(5)]
    assert lines[5] == "dropped 7 log lines over the limit of 5 a second"
    assert lines[6] == "next second"
    note = ring.after(5)[0][0]
    assert (note["tag"], note["severity"]) == ("sandlot", "warning")


async def test_ring_wakes_a_waiting_follower() -> None:
    ring = LogRing()
    waiter = asyncio.ensure_future(ring.wait_after(0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    ring.add(_line("now"), now=1.0)
    await asyncio.wait_for(waiter, 1)


# -- the socket, through a real agent -----------------------------------------------------


@pytest.fixture
def syslog_agent() -> Iterator[tuple[RunningAgent, str]]:
    # Unix socket paths are short: keep this one out of pytest's long tmp paths too.
    log_dir = tempfile.mkdtemp(prefix="sandlot-syslog-")
    path = os.path.join(log_dir, "log")
    agent = start_agent(None, "--syslog", path)
    yield agent, path
    agent.stop()
    shutil.rmtree(log_dir, ignore_errors=True)


async def _next(lines: AsyncIterator[LogBatch]) -> LogBatch:
    return await asyncio.wait_for(anext(lines), 10)


async def _logger(path: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec("logger", "-u", path, *args)
    assert await proc.wait() == 0


def _python_log(path: str, message: str) -> None:
    handler = logging.handlers.SysLogHandler(address=path)
    logger = logging.getLogger("test_syslog")
    logger.addHandler(handler)
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
        handler.close()


async def test_logger_and_python_reach_a_follower_once(
    syslog_agent: tuple[RunningAgent, str],
) -> None:
    if shutil.which("logger") is None:
        pytest.skip("logger (util-linux) is not installed")
    agent, path = syslog_agent
    async with connected(agent) as client:  # the agent is up: its syslog socket too
        await _logger(path, "-t", "myapp", "-p", "local0.err", "hi")
        _python_log(path, "from python")
        lines = client.follow_log()
        got: list[dict[str, object]] = []
        while len(got) < 2:
            got += (await _next(lines)).lines
        assert [(g["tag"], g["severity"], g["facility"], g["line"]) for g in got] == [
            ("myapp", "err", "local0", "hi"),
            ("", "warning", "user", "from python"),
        ]
    # A later follower, on a new connection, starts after what the first one was handed.
    await _logger(path, "-t", "myapp", "second")
    async with connected(agent) as client:
        batch = await _next(client.follow_log())
        assert [line["line"] for line in batch.lines] == ["second"]
