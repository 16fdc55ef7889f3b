"""Closing an agent connection is bounded: an agent that stops reading (root inside can
replace it with one) leaves the host's unsent frames in its buffer, and a close that
waited for them to drain would hold a destroy for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sandlot.runtime.agent_client import CLOSE_GRACE, AgentClient


async def _close_against_a_peer_that_never_reads(socket_path: Path) -> tuple[float, int]:
    held: list[asyncio.StreamWriter] = []

    async def never_read(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keeps the connection open, reads nothing

    server = await asyncio.start_unix_server(never_read, path=str(socket_path))
    async with server:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        client = AgentClient(reader, writer)
        for _ in range(16):
            client._out.send_data(1, b"x" * (1 << 20))
        unsent = writer.transport.get_write_buffer_size()
        started = time.monotonic()
        await client.close()
        elapsed = time.monotonic() - started
        for peer in held:
            peer.close()
    return elapsed, unsent


def test_close_cuts_a_connection_whose_agent_stopped_reading(tmp_path: Path) -> None:
    elapsed, unsent = asyncio.run(_close_against_a_peer_that_never_reads(tmp_path / "a.sock"))
    assert unsent > 1 << 20, "the test must leave frames unsent for close to face"
    assert elapsed < CLOSE_GRACE + 1.0, f"close waited {elapsed:.1f}s on an agent not reading"
