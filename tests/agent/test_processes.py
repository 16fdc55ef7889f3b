"""Background processes in the real agent: scrollback, attach and re-attach, stdin,
signals, terminals, and back-pressure from slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandlot.errors import (
    InvalidConfigError,
    InvalidStateError,
    ProcessNotFoundError,
    SandboxUnavailableError,
)
from sandlot.runtime.agent_client import PROCESS_INFO_KEYS, AgentClient, Attachment

from .conftest import RunningAgent, connected, eventually, process_state


async def collect(attachment: Attachment) -> list[tuple[str, bytes]]:
    return [(fd, data) async for fd, data in attachment]


def joined(chunks: list[tuple[str, bytes]], fd: str) -> bytes:
    return b"".join(data for name, data in chunks if name == fd)


async def read_until(output: AsyncIterator[tuple[str, bytes]], needle: bytes) -> bytes:
    """Consume output until `needle` appeared; returns everything read."""
    seen = b""
    async with asyncio.timeout(5):
        while needle not in seen:
            _, data = await anext(output)
            seen += data
    return seen


async def wait_exited(client: AgentClient, process_id: str, timeout: float = 3) -> dict[str, Any]:
    """Poll (attaching would cancel a pending max_run_after_disconnect kill)."""
    deadline = time.monotonic() + timeout
    while True:
        info = await client.process_info(process_id)
        if info["status"] == "exited":
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"process {process_id} still running after {timeout}s")
        await asyncio.sleep(0.01)


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- start, attach, re-attach ----------------------------------------------------------


@pytest.mark.asyncio
async def test_start_then_attach_streams_output_and_the_exit(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        info = await client.start_process("echo one; sleep 0.2; echo two >&2; exit 4")
        attachment = await client.attach(info["process_id"])
        at_attach = attachment.info
        chunks = await collect(attachment)
        final = await client.process_info(info["process_id"])
    assert tuple(info) == PROCESS_INFO_KEYS
    assert (info["status"], info["pty"], info["cwd"]) == ("running", False, str(agent.workdir))
    assert info["command"] == "echo one; sleep 0.2; echo two >&2; exit 4"
    assert abs(info["started_at"] - time.time()) < 5
    assert [info[key] for key in ("exit_code", "signal", "duration_ms", "timed_out")] == [None] * 4
    assert attachment.dropped_bytes == 0 and at_attach["status"] == "running"
    assert chunks == [("stdout", b"one\n"), ("stderr", b"two\n")]
    assert attachment.result is not None
    assert (attachment.result.exit_code, attachment.result.signal) == (4, None)
    assert attachment.result.duration_ms >= 200 and not attachment.result.timed_out
    assert attachment.info == final and final["status"] == "exited" and final["exit_code"] == 4


@pytest.mark.asyncio
async def test_reattach_from_another_connection_replays_then_follows(agent: RunningAgent) -> None:
    script = "echo before; read word; echo after $word; echo err >&2"
    async with connected(agent) as first:
        info = await first.start_process(script)
        early = await first.attach(info["process_id"])
        assert await read_until(aiter(early), b"before\n") == b"before\n"
        await early.detach()
        assert [chunk async for chunk in early] == []  # the iteration ended
        with pytest.raises(InvalidStateError):
            await early.send_stdin(b"too late\n")
    assert process_state(info["pid"]) is not None  # still running, waiting for stdin
    async with connected(agent) as second, connected(agent) as third:
        late = await second.attach(info["process_id"])
        watcher = await third.attach(info["process_id"])  # two clients at once
        await late.send_stdin(b"go\n")
        late_chunks, watched = await asyncio.gather(collect(late), collect(watcher))
    for chunks in (late_chunks, watched):
        assert joined(chunks, "stdout") == b"before\nafter go\n"
        assert joined(chunks, "stderr") == b"err\n"
    assert late.result is not None and watcher.result is not None
    assert late.result.exit_code == watcher.result.exit_code == 0


@pytest.mark.asyncio
async def test_scrollback_keeps_the_last_bytes_and_counts_the_rest(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        info = await client.start_process("seq 1 2000", scrollback=1000)
        done = await wait_exited(client, info["process_id"])
        attachment = await client.attach(info["process_id"])  # after the exit
        chunks = await collect(attachment)
    everything = "".join(f"{i}\n" for i in range(1, 2001)).encode()
    assert done["exit_code"] == 0 and attachment.info["status"] == "exited"
    assert joined(chunks, "stdout") == everything[-1000:]
    assert attachment.dropped_bytes == len(everything) - 1000
    assert attachment.result is not None and attachment.result.exit_code == 0


@pytest.mark.asyncio
async def test_a_dropped_connection_leaves_the_process_running(agent: RunningAgent) -> None:
    first = await AgentClient.connect(agent.socket)
    info = await first.start_process("echo started; read line; echo got $line")
    attachment = await first.attach(info["process_id"])
    await read_until(aiter(attachment), b"started\n")
    await first.close()
    with pytest.raises(SandboxUnavailableError):
        await anext(aiter(attachment))
    with pytest.raises(SandboxUnavailableError):
        await first.process_info(info["process_id"])
    await asyncio.sleep(0.1)
    async with connected(agent) as second:
        assert (await second.process_info(info["process_id"]))["status"] == "running"
        again = await second.attach(info["process_id"])
        await again.send_stdin(b"hello\n")
        chunks = await collect(again)
    assert joined(chunks, "stdout") == b"started\ngot hello\n"


@pytest.mark.asyncio
async def test_agent_dying_ends_attachments_with_unavailable(own_agent: RunningAgent) -> None:
    client = await AgentClient.connect(own_agent.socket)
    info = await client.start_process(["sleep", "30"])
    attachment = await client.attach(info["process_id"])
    pending = asyncio.ensure_future(collect(attachment))
    await asyncio.sleep(0.05)
    own_agent.proc.kill()
    try:
        with pytest.raises(SandboxUnavailableError):
            await asyncio.wait_for(pending, 2)
    finally:
        await client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(info["pid"], signal.SIGKILL)


@pytest.mark.asyncio
async def test_max_run_after_disconnect(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        # Nobody attaches: killed that long after the start.
        orphan = await client.start_process(["sleep", "30"], max_run_after_disconnect=0.2)
        # Attached in time, then left: killed that long after the last client left.
        watched = await client.start_process(["sleep", "30"], max_run_after_disconnect=0.3)
        first = await client.attach(watched["process_id"])
        second = await client.attach(watched["process_id"])
        await asyncio.sleep(0.4)
        await first.detach()
        await asyncio.sleep(0.4)  # one client still attached: nothing happens
        assert (await client.process_info(watched["process_id"]))["status"] == "running"
        await second.detach()
        left_at = time.monotonic()
        await asyncio.sleep(0.15)
        third = await client.attach(watched["process_id"])  # back in time: the kill is off
        await asyncio.sleep(0.4)
        assert (await client.process_info(watched["process_id"]))["status"] == "running"
        await third.detach()
        left_at = time.monotonic()
        killed = await wait_exited(client, watched["process_id"])
        waited = time.monotonic() - left_at
        unattached = await wait_exited(client, orphan["process_id"])
    assert (killed["signal"], killed["timed_out"]) == ("SIGKILL", False)
    assert 0.25 < waited < 1.5
    assert unattached["signal"] == "SIGKILL" and unattached["duration_ms"] < 1500


# -- stdin, signals, timeout -----------------------------------------------------------


@pytest.mark.asyncio
async def test_stdin_data_and_eof(agent: RunningAgent) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, past the pipe buffers
    async with connected(agent) as client:
        info = await client.start_process(["cat"])
        attachment = await client.attach(info["process_id"])
        reading = asyncio.ensure_future(collect(attachment))
        await attachment.send_stdin(data)
        await attachment.close_stdin()
        chunks = await asyncio.wait_for(reading, 5)
    assert joined(chunks, "stdout") == data
    assert attachment.result is not None and attachment.result.exit_code == 0


@pytest.mark.asyncio
async def test_signals_by_name_and_number_reach_the_group(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        # A child in the background: the group signal must reach it too.
        script = "sleep 30 & echo $!; wait"
        term = await client.start_process(script)
        term_attachment = await client.attach(term["process_id"])
        child = int(await read_until(aiter(term_attachment), b"\n"))
        await client.signal_process(term["process_id"], "SIGTERM")
        await collect(term_attachment)
        interrupted = await client.start_process(["sleep", "30"])
        int_attachment = await client.attach(interrupted["process_id"])
        await int_attachment.signal("INT")
        await collect(int_attachment)
        killed = await client.start_process(["sleep", "30"])
        await client.signal_process(killed["process_id"], 9)
        killed_info = await wait_exited(client, killed["process_id"])
        with pytest.raises(InvalidConfigError, match="no such signal"):
            await client.signal_process(killed["process_id"], "SIGNOPE")
        with pytest.raises(ProcessNotFoundError) as missing:
            await client.signal_process("no-such-id", "TERM")
        await client.signal_process(killed["process_id"], "TERM")  # exited: nothing to do
    assert term_attachment.result is not None and term_attachment.result.signal == "SIGTERM"
    await eventually(lambda: process_state(child) is None)
    assert int_attachment.result is not None
    assert (int_attachment.result.exit_code, int_attachment.result.signal) == (None, "SIGINT")
    assert (killed_info["exit_code"], killed_info["signal"]) == (None, "SIGKILL")
    assert missing.value.code == "PROCESS_NOT_FOUND" and missing.value.status == 404


@pytest.mark.asyncio
async def test_timeout_kills_the_group(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        info = await client.start_process("sleep 30 & echo $!; sleep 30", timeout=0.3)
        attachment = await client.attach(info["process_id"])
        chunks = await collect(attachment)
    assert attachment.result is not None
    assert attachment.result.timed_out and attachment.result.signal == "SIGKILL"
    assert 250 < attachment.result.duration_ms < 3000
    await eventually(lambda: process_state(int(joined(chunks, "stdout"))) is None)


@pytest.mark.asyncio
async def test_unknown_ids_and_bad_requests(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        for call in (
            client.attach("12345"),
            client.process_info("12345"),
            client.resize("12345", 80, 24),
        ):
            with pytest.raises(ProcessNotFoundError):
                await call
        plain = await client.start_process(["sleep", "30"])
        with pytest.raises(InvalidConfigError, match="no terminal"):
            await client.resize(plain["process_id"], 80, 24)
        with pytest.raises(InvalidConfigError, match="terminal size"):
            await client.start_process(["true"], pty=(0, 24))
        with pytest.raises(InvalidConfigError, match="scrollback"):
            await client.start_process(["true"], scrollback=-1)
        await client.signal_process(plain["process_id"], "KILL")
        await wait_exited(client, plain["process_id"])


@pytest.mark.asyncio
async def test_list_running_and_exited(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        running = await client.start_process(["sleep", "30"])
        done = await client.start_process(["true"])
        await wait_exited(client, done["process_id"])
        now = {p["process_id"]: p for p in await client.list_processes()}
        everything = {p["process_id"]: p for p in await client.list_processes(include_exited=True)}
        await client.signal_process(running["process_id"], "KILL")
    assert running["process_id"] in now and done["process_id"] not in now
    assert all(p["status"] == "running" for p in now.values())
    assert everything[done["process_id"]]["status"] == "exited"
    assert everything[done["process_id"]]["exit_code"] == 0
    assert everything[running["process_id"]]["status"] == "running"
    assert all(tuple(p) == PROCESS_INFO_KEYS for p in everything.values())


# -- terminals -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_terminal_size_resize_and_exit_code(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        info = await client.start_process(
            ["sh", "-c", 'echo "TERM=$TERM"; tty -s && echo has-tty; exec sh -i'], pty=(120, 40)
        )
        attachment = await client.attach(info["process_id"])
        output = aiter(attachment)
        assert b"TERM=xterm-256color" in await read_until(output, b"has-tty")
        await attachment.send_stdin(b"stty size\n")
        await read_until(output, b"40 120")
        await attachment.resize(100, 30)
        await attachment.send_stdin(b"stty size\n")
        await read_until(output, b"30 100")
        await attachment.send_stdin(b"exit 3\n")
        chunks = await collect(attachment)
    assert info["pty"] is True
    assert {fd for fd, _ in chunks} <= {"pty"}
    assert attachment.result is not None and attachment.result.exit_code == 3


@pytest.mark.asyncio
async def test_terminal_close_stdin_sends_eof(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        info = await client.start_process(["cat"], pty=(80, 24), env={"TERM": "dumb"})
        attachment = await client.attach(info["process_id"])
        await attachment.send_stdin(b"typed\n")
        await attachment.close_stdin()
        chunks = await collect(attachment)
    assert b"typed" in joined(chunks, "pty")
    assert attachment.result is not None and attachment.result.exit_code == 0


# -- bytes, order, back-pressure -------------------------------------------------------


@pytest.mark.asyncio
async def test_output_is_binary_safe_and_ordered_per_stream(agent: RunningAgent) -> None:
    script = r"printf '\377\376\000\200'; seq 1 200000; seq 1 50000 >&2"
    async with connected(agent) as client:
        info = await client.start_process(script, scrollback=64, hold_until_attach=5)
        chunks = await collect(await client.attach(info["process_id"]))
    numbers = "".join(f"{i}\n" for i in range(1, 200001)).encode()
    assert joined(chunks, "stdout") == b"\xff\xfe\x00\x80" + numbers
    assert joined(chunks, "stderr") == "".join(f"{i}\n" for i in range(1, 50001)).encode()


@pytest.mark.asyncio
async def test_slow_consumer_bounds_the_agents_memory(own_agent: RunningAgent) -> None:
    size = 50 * 1024 * 1024
    async with connected(own_agent) as client:
        await client.exec("true")
        baseline = vm_rss_kib(own_agent.pid)
        writer = f"import sys; sys.stdout.buffer.write(bytes(range(256)) * {size // 256})"
        info = await client.start_process(["python3", "-c", writer], hold_until_attach=5)
        attachment = await client.attach(info["process_id"])
        peak = 0
        received = 0
        mismatch = None
        expected = bytes(range(256)) * 4096
        async for fd, data in attachment:
            assert fd == "stdout"
            offset = received % 256
            if data != (expected[offset:] + expected)[: len(data)] and mismatch is None:
                mismatch = received
            received += len(data)
            peak = max(peak, vm_rss_kib(own_agent.pid))
            await asyncio.sleep(0.003)  # far slower than the writer
    assert received == size and mismatch is None
    assert attachment.result is not None and attachment.result.exit_code == 0
    assert peak - baseline < 24 * 1024, f"agent RSS grew from {baseline} KiB to {peak} KiB"
