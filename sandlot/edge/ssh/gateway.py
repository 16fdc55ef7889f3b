"""The SSH gateway's listener: started and stopped with the server."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import asyncssh

from sandlot.core.service import SandboxService
from sandlot.core.ssh_access import SshAccess
from sandlot.edge.ssh.auth import GatewayServer, Limiter, LoginThrottle
from sandlot.edge.ssh.host_key import load_or_create
from sandlot.errors import InvalidConfigError

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 30


class SshGateway:
    def __init__(
        self,
        service: SandboxService,
        access: SshAccess,
        *,
        host: str,
        port: int,
        data_dir: Path,
        limiter: Limiter,
    ) -> None:
        self._service = service
        self._access = access
        self.host = host
        self.port = port
        self._data_dir = data_dir
        self._throttle = LoginThrottle(limiter)
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def public_host(self) -> str | None:
        """The address clients should dial, None when the gateway listens on every
        address (then the host name the client reached the API by is the best guess)."""
        try:
            unspecified = ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            unspecified = self.host == ""
        return None if unspecified else self.host

    async def start(self) -> None:
        key = load_or_create(self._data_dir)
        try:
            self._acceptor = await asyncssh.create_server(
                self._new_connection,
                self.host,
                self.port,
                server_host_keys=[key],
                encoding=None,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
                keepalive_interval=KEEPALIVE_SECONDS,
            )
        except OSError as exc:
            raise InvalidConfigError(
                f"the SSH gateway cannot listen on {self.host}:{self.port}: {exc.strerror}; "
                "set ssh_port (SANDLOT_SSH_PORT) to a free port, or 0 to turn SSH off"
            ) from None
        self.port = self._acceptor.sockets[0].getsockname()[1]
        log.info("SSH gateway listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._acceptor is None:
            return
        self._acceptor.close()
        await self._acceptor.wait_closed()
        for conn in list(self._connections):
            conn.close()
        self._acceptor = None

    def _new_connection(self) -> GatewayServer:
        return GatewayServer(self._service, self._access, self._throttle, self._connections)
