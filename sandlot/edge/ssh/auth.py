"""Logging in: the username names the sandbox; its organisation's keys or its password
let the caller in, and an address that keeps failing is turned away for a while."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Protocol

import asyncssh

from sandlot.core.service import SandboxService
from sandlot.core.ssh_access import SshAccess
from sandlot.edge.ssh.forwarding import TcpSession, open_forward
from sandlot.edge.ssh.sessions import ProcessSession
from sandlot.edge.ssh.target import Target
from sandlot.errors import RateLimitedError


class Limiter(Protocol):
    """A token bucket per key; `check` takes a token or raises RateLimitedError."""

    def check(self, key: str) -> None: ...


class LoginThrottle:
    """Each failed attempt takes a token from its address's bucket; an address whose
    bucket is empty is refused without a look at its credentials until it refills."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._blocked: dict[str, float] = {}

    def allowed(self, address: str) -> bool:
        until = self._blocked.get(address)
        if until is None:
            return True
        if until > time.monotonic():
            return False
        del self._blocked[address]
        return True

    def failed(self, address: str) -> None:
        try:
            self._limiter.check(address)
        except RateLimitedError as exc:
            wait = float(exc.details.get("retryAfterSeconds", 1.0))
            self._blocked[address] = time.monotonic() + wait


class GatewayServer(asyncssh.SSHServer):
    """One SSH connection: authenticate it, then open its channels in the sandbox."""

    def __init__(
        self,
        service: SandboxService,
        access: SshAccess,
        throttle: LoginThrottle,
        connections: set[asyncssh.SSHServerConnection],
    ) -> None:
        self._service = service
        self._access = access
        self._throttle = throttle
        self._connections = connections
        self._conn: asyncssh.SSHServerConnection | None = None
        self._address = "unknown"
        self._sandbox_id = ""
        self._target: Target | None = None
        self._key_refused = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)
        peer = conn.get_extra_info("peername")
        if peer:
            self._address = str(peer[0])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        self._sandbox_id = username
        return True  # always ask for credentials

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = self._throttle.allowed(self._address) and self._access.key_allowed(
            username, key.public_data
        )
        # A client offers each key it holds in turn: keys cannot be guessed, so the
        # refusals of one connection count once, and a user with many keys is not
        # turned away for them.
        if not ok and not self._key_refused:
            self._key_refused = True
            self._throttle.failed(self._address)
        return ok

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        ok = self._throttle.allowed(self._address) and await self._access.password_allowed(
            username, password
        )
        if not ok:
            self._throttle.failed(self._address)
        return ok

    def auth_completed(self) -> None:
        org_id = self._access.owner(self._sandbox_id)
        if org_id is None and self._conn is not None:  # destroyed while logging in
            self._conn.close()
            return
        self._target = Target(self._service, org_id or "", self._sandbox_id)

    def session_requested(self) -> ProcessSession | bool:
        return ProcessSession(self._target) if self._target is not None else False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Awaitable[TcpSession] | bool:
        if self._target is None:
            return False
        return open_forward(self._target, dest_host, dest_port)
