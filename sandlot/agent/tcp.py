"""TCP connections opened from inside the sandbox, relayed over one stream.

The host cannot reach a port bound to the sandbox's loopback (it lives in the sandbox's
network namespace), so the agent connects on its behalf: this is what carries SSH port
forwarding. Only the sandbox's own addresses are allowed, so the relay cannot be used
to reach other machines from the host's side of the sandbox's network policy.

Stream shape: request `connect` {host, port}; a `connected` event; data frames both ways
(credit as usual); an `end` frame from the client half-closes the socket; an `eof` event
says the peer half-closed; the response {} comes once both directions are finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import TYPE_CHECKING, Any

from . import errors
from .protocol import CHUNK_SIZE, DATA, END

if TYPE_CHECKING:
    from .server import Agent, Stream

CONNECT_TIMEOUT = 10.0


async def connect(agent: Agent, stream: Stream, args: dict[str, Any]) -> dict[str, Any]:
    host, port = args.get("host"), args.get("port")
    if not isinstance(host, str) or not host:
        raise errors.invalid("host must be a non-empty string")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise errors.invalid("port must be an integer from 1 to 65535")
    address, reader, writer = await _connect_locally(host, port)
    try:
        stream.event("connected", address=address)
        inbound = asyncio.get_running_loop().create_task(_to_socket(stream, writer))
        await _from_socket(stream, reader)
        stream.event("eof")
        await inbound
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return {}


async def _from_socket(stream: Stream, reader: asyncio.StreamReader) -> None:
    while True:
        await stream.send_window.wait()
        try:
            data = await reader.read(CHUNK_SIZE)
        except OSError:
            return
        if not data:
            return
        stream.send_data(data)
        await stream.drain()


async def _to_socket(stream: Stream, writer: asyncio.StreamWriter) -> None:
    """The client's bytes into the socket until its end frame; a peer that went away
    makes the rest of them moot, so they are consumed and dropped."""
    broken = False
    while True:
        frame = await stream.inbox.get()
        if frame.type == DATA:
            if not broken:
                try:
                    writer.write(frame.payload)
                    await writer.drain()
                except OSError:
                    broken = True
            stream.consumed(len(frame.payload))
        elif frame.type == END:
            if not broken and writer.can_write_eof():
                with contextlib.suppress(OSError):
                    writer.write_eof()
            return


async def _connect_locally(
    host: str, port: int
) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first of `host`'s addresses that is the sandbox's own and accepts
    (`localhost` is ::1 and 127.0.0.1; a server may listen on only one of them)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise errors.AgentError(
            errors.CONNECT_FAILED, f"cannot resolve {host!r} in the sandbox: {exc}", {"host": host}
        ) from None
    addresses = [str(info[4][0]) for info in infos if _is_local(info[0], str(info[4][0]))]
    if not addresses:
        raise errors.invalid(
            f"{host} is not an address of the sandbox: only its loopback and its own "
            "addresses can be reached this way"
        )
    failure: BaseException | None = None
    for address in dict.fromkeys(addresses):
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError) as exc:
            failure = exc
            continue
        return address, reader, writer
    reason = getattr(failure, "strerror", None) or repr(failure)
    raise errors.AgentError(
        errors.CONNECT_FAILED,
        f"cannot connect to {host}:{port} in the sandbox: {reason}",
        {"host": host, "port": port},
    )


def _is_local(family: int, address: str) -> bool:
    """Loopback, or an address bound to one of the sandbox's interfaces: binding to any
    other address fails with EADDRNOTAVAIL."""
    if ipaddress.ip_address(address.split("%", 1)[0]).is_loopback:
        return True
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True
