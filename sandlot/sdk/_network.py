"""A sandbox's network: its egress policy (`sbx.update_network`) and the ports it shows
through preview URLs (`sbx.ports`, `sbx.get_url`).

A policy is written as the REST API takes it::

    {"egress": {"default": "deny", "allow": ["pypi.org", "*.github.com", "10.20.0.0/16"],
                "deny": []},
     "ingress": {"allowPorts": [3000]}}
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import TypeAdapter

from sandlot.errors import PortNotExposedError
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import SandboxInfo, _Model

PortAuth = Literal["public", "token"]


class Port(_Model):
    """A port reachable at `url`; `token` is set only in the answer to `expose`."""

    port: int
    url: str
    auth: PortAuth
    automatic: bool
    """One of the sandbox's automatic preview ports rather than an exposed one."""
    token: str | None = None
    created_at: datetime | None = None


_PORTS = TypeAdapter(list[Port])


def network_body(
    egress: Mapping[str, object] | None, ingress: Mapping[str, object] | None
) -> dict[str, object]:
    body: dict[str, object] = {}
    if egress is not None:
        body["egress"] = dict(egress)
    if ingress is not None:
        body["ingress"] = dict(ingress)
    return body


def update_network_call(
    sandbox_id: str, egress: Mapping[str, object] | None, ingress: Mapping[str, object] | None
) -> Call[SandboxInfo]:
    path = sandbox_path(sandbox_id, "/network")
    body = network_body(egress, ingress)
    return Call("PATCH", path, parse=SandboxInfo.model_validate, json=body)


def _expose_call(sandbox_id: str, port: int, auth: PortAuth) -> Call[Port]:
    body = {"port": port, "auth": auth}
    return Call("POST", sandbox_path(sandbox_id, "/ports"), parse=Port.model_validate, json=body)


def list_ports_call(sandbox_id: str) -> Call[list[Port]]:
    return Call("GET", sandbox_path(sandbox_id, "/ports"), parse=_PORTS.validate_python)


def _close_call(sandbox_id: str, port: int) -> Call[Port]:
    path = sandbox_path(sandbox_id, f"/ports/{port}")
    return Call("DELETE", path, parse=Port.model_validate)


def url_of(sandbox_id: str, ports: builtins.list[Port], port: int) -> str:
    for p in ports:
        if p.port == port:
            return p.url
    raise PortNotExposedError(
        f"port {port} of sandbox {sandbox_id} has no preview URL; expose it first",
        details={"port": port},
    )


class Ports:
    """`sbx.ports`: preview URLs for ports the sandbox listens on."""

    def __init__(self, sandbox_id: str, transport: SyncTransport) -> None:
        self._id = sandbox_id
        self._transport = transport

    def expose(self, port: int, auth: PortAuth = "public") -> Port:
        """With `auth="token"` callers need the returned `token` (as the
        `X-Sandlot-Token` header or `?token=`); it is shown only now."""
        return self._transport.send(_expose_call(self._id, port, auth))

    def list(self) -> builtins.list[Port]:
        """Exposed ports and the automatic preview ports."""
        return self._transport.send(list_ports_call(self._id))

    def close(self, port: int) -> Port:
        return self._transport.send(_close_call(self._id, port))


class AsyncPorts:
    """`sbx.ports` of an `AsyncSandbox`."""

    def __init__(self, sandbox_id: str, transport: AsyncTransport) -> None:
        self._id = sandbox_id
        self._transport = transport

    async def expose(self, port: int, auth: PortAuth = "public") -> Port:
        return await self._transport.send(_expose_call(self._id, port, auth))

    async def list(self) -> builtins.list[Port]:
        return await self._transport.send(list_ports_call(self._id))

    async def close(self, port: int) -> Port:
        return await self._transport.send(_close_call(self._id, port))
