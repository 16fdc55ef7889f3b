"""Local port forwarding (`ssh -L`): a direct-tcpip channel to a port inside the sandbox.

The agent opens the connection in the sandbox's network namespace, so `localhost`
means the sandbox's loopback; the agent refuses any address that is not the sandbox's.
"""

from __future__ import annotations

import asyncssh

from sandlot.core.session import TcpConnectionLike
from sandlot.edge.ssh.channel import ChannelBridge
from sandlot.edge.ssh.target import Target
from sandlot.errors import SandlotError


async def open_forward(target: Target, host: str, port: int) -> TcpSession:
    """Connect first, so a refused port refuses the channel as OpenSSH would."""
    try:
        session = await target.service.work.session(target.org_id, target.sandbox_id)
        connection = await session.open_tcp(host, port)
    except SandlotError as exc:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, exc.message) from None
    return TcpSession(target, connection)


class TcpSession(ChannelBridge, asyncssh.SSHTCPSession[bytes]):
    def __init__(self, target: Target, connection: TcpConnectionLike) -> None:
        super().__init__(target)
        self._connection = connection
        self._open_directions = 2

    def session_started(self) -> None:
        self.spawn(self._pump_output())
        self.spawn(self._pump_input())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.spawn_detached(self._connection.close())

    async def _pump_output(self) -> None:
        async for data in self._connection:
            await self.write(data)
        self._chan.write_eof()
        self._direction_done()

    async def _pump_input(self) -> None:
        while (data := await self.next_input()) is not None:
            await self._connection.send(data)
        await self._connection.close_write()
        self._direction_done()

    def _direction_done(self) -> None:
        self._open_directions -= 1
        if self._open_directions == 0:
            self._chan.close()
