"""Exposed ports and their preview URLs: which ports of a sandbox the edge proxy may
reach, and what a caller must show to reach them.

A sandbox's automatic preview ports (3000, 3001, 5173, 8000, 8080 unless its policy says
otherwise) are public, as on other sandbox platforms; `expose` adds ports or puts a
token in front of one. Only a token's hash is stored. Exposures are cached per sandbox
because the proxy consults them on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sandlot.core.events import Event, EventBus
from sandlot.domain.network_policy import NetworkPolicy
from sandlot.errors import AuthenticationError, PortNotExposedError
from sandlot.store import ports as port_rows
from sandlot.store.database import Database
from sandlot.store.tables import PortRow

Auth = Literal["public", "token"]


@dataclass(frozen=True)
class PreviewConfig:
    domain: str = "sandboxes.localhost"
    scheme: str = "http"
    port: int = 7766
    """The port users reach the proxy on (the API's own, by default)."""

    def url(self, sandbox_id: str, port: int) -> str:
        default = {"http": 80, "https": 443}.get(self.scheme)
        suffix = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{port}-{sandbox_id}.{self.domain}{suffix}"


@dataclass(frozen=True)
class Exposure:
    port: int
    auth: Auth
    url: str
    automatic: bool = False
    token_hash: str | None = None
    created_at: datetime | None = None

    def admits(self, token: str | None) -> bool:
        if self.auth == "public":
            return True
        return (
            token is not None
            and self.token_hash is not None
            and hmac.compare_digest(_hash(token), self.token_hash)
        )


class Previews:
    def __init__(self, db: Database, events: EventBus, config: PreviewConfig) -> None:
        self.db = db
        self.events = events
        self.config = config
        self._exposed: dict[str, dict[int, Exposure]] = {}

    def list(self, sandbox_id: str, policy: NetworkPolicy | None) -> list[Exposure]:
        """Exposed ports and the automatic ones, by port."""
        exposed = dict(self._load(sandbox_id, keep=policy is not None))
        for port in policy.preview_ports if policy else ():
            exposed.setdefault(
                port, Exposure(port, "public", self.config.url(sandbox_id, port), automatic=True)
            )
        return [exposed[p] for p in sorted(exposed)]

    def expose(
        self, org_id: str, sandbox_id: str, port: int, auth: Auth
    ) -> tuple[Exposure, str | None]:
        """Returns the exposure and, for token auth, the token (shown only now)."""
        token = secrets.token_urlsafe(24) if auth == "token" else None
        now = datetime.now(UTC)
        token_hash = _hash(token) if token else None
        with self.db.session() as s:
            port_rows.put(
                s,
                PortRow(
                    sandbox_id=sandbox_id,
                    port=port,
                    auth=auth,
                    token_hash=token_hash,
                    created_at=now,
                ),
            )
        exposure = Exposure(port, auth, self.config.url(sandbox_id, port), False, token_hash, now)
        self._load(sandbox_id, keep=True)[port] = exposure
        self.events.publish(
            Event(
                "port.exposed",
                sandbox_id,
                org_id,
                {"port": port, "auth": auth, "url": exposure.url},
            )
        )
        return exposure, token

    def close(self, org_id: str, sandbox_id: str, port: int) -> None:
        with self.db.session() as s:
            found = port_rows.remove(s, sandbox_id, port)
        self._exposed.get(sandbox_id, {}).pop(port, None)
        if not found:
            raise PortNotExposedError(
                f"port {port} of sandbox {sandbox_id} is not exposed",
                details={"sandboxId": sandbox_id, "port": port},
            )
        self.events.publish(Event("port.closed", sandbox_id, org_id, {"port": port}))

    def admit(
        self, sandbox_id: str, port: int, token: str | None, policy: NetworkPolicy | None
    ) -> Exposure:
        """The exposure a proxied request to `port` falls under, if `token` opens it."""
        exposure = self._load(sandbox_id, keep=policy is not None).get(port)
        if exposure is None and policy is not None and port in policy.preview_ports:
            return Exposure(port, "public", "", automatic=True)
        if exposure is None:
            raise PortNotExposedError(
                f"port {port} of sandbox {sandbox_id} is not exposed; "
                f"expose it with `sandlot sandbox expose {sandbox_id} {port}`"
            )
        if not exposure.admits(token):
            raise AuthenticationError(
                "this preview URL needs its token: send `X-Sandlot-Token` or add `?token=`"
            )
        return exposure

    def forget(self, sandbox_id: str) -> None:
        self._exposed.pop(sandbox_id, None)

    def _load(self, sandbox_id: str, *, keep: bool) -> dict[int, Exposure]:
        """The sandbox's exposures, cached if `keep`: only for a sandbox with a network
        on this host (callers pass whether it has a policy), so that asking about one
        destroyed, or any name in a preview host, leaves nothing behind."""
        cached = self._exposed.get(sandbox_id)
        if cached is None:
            with self.db.session() as s:
                cached = {
                    r.port: Exposure(
                        r.port,
                        "token" if r.auth == "token" else "public",
                        self.config.url(sandbox_id, r.port),
                        False,
                        r.token_hash,
                        r.created_at,
                    )
                    for r in port_rows.of_sandbox(s, sandbox_id)
                }
            if keep:
                self._exposed[sandbox_id] = cached
        return cached


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
