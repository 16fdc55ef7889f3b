"""The agent's `connect` operation: TCP from inside the sandbox, relayed with credit."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from sandlot.errors import ConnectFailedError, InvalidConfigError

from .conftest import RunningAgent, connected, pattern


async def _echo_server() -> tuple[asyncio.Server, int]:
    """Echoes until the client half-closes, then closes its side."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.asyncio
async def test_relay_carries_bytes_both_ways_and_half_closes(agent: RunningAgent) -> None:
    server, port = await _echo_server()
    payload = pattern(8 * 1024 * 1024 + 17)  # past the stream window both ways
    async with server, connected(agent) as client:
        conn = await client.open_tcp("localhost", port)
        assert conn.address in ("127.0.0.1", "::1")

        async def upload() -> None:
            await conn.send(payload)
            await conn.close_write()

        sender = asyncio.create_task(upload())
        received = hashlib.sha256()
        size = 0
        async for chunk in conn:
            received.update(chunk)
            size += len(chunk)
        await sender
        await conn.close()
        assert size == len(payload)
        assert received.hexdigest() == hashlib.sha256(payload).hexdigest()
        assert (await client.ping())["pid"] == agent.pid  # the connection is still usable


@pytest.mark.asyncio
async def test_peer_that_speaks_first_and_closes(agent: RunningAgent) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello\n")
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, connected(agent) as client:
        conn = await client.open_tcp("127.0.0.1", port)
        assert b"".join([chunk async for chunk in conn]) == b"hello\n"
        await conn.close_write()
        await conn.close()


@pytest.mark.asyncio
async def test_refused_port_and_foreign_address(agent: RunningAgent) -> None:
    server, port = await _echo_server()
    server.close()
    await server.wait_closed()
    async with connected(agent) as client:
        with pytest.raises(ConnectFailedError, match="cannot connect"):
            await client.open_tcp("127.0.0.1", port)
        with pytest.raises(InvalidConfigError, match="not an address of the sandbox"):
            await client.open_tcp("192.0.2.1", 80)  # TEST-NET-1: never local
        with pytest.raises(InvalidConfigError, match="port must be"):
            await client.open_tcp("127.0.0.1", 70000)


@pytest.mark.asyncio
async def test_closing_the_relay_closes_the_socket(agent: RunningAgent) -> None:
    closed = asyncio.Event()

    async def wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        closed.set()

    server = await asyncio.start_server(wait_for_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, connected(agent) as client:
        conn = await client.open_tcp("127.0.0.1", port)
        await conn.send(b"partial")
        await conn.close()
        await asyncio.wait_for(closed.wait(), 5)
