"""SSH access: the organisation's public keys, and where to reach a sandbox by SSH."""

from __future__ import annotations

import shlex
from typing import Protocol

from fastapi import APIRouter, Request

from sandlot.api.deps import Reader, Service, Writer
from sandlot.api.routes.sandboxes import SandboxId
from sandlot.api.schemas import Envelope, SshInfoOut, SshKeyIn, SshKeyOut
from sandlot.core.ssh_access import SshAccess
from sandlot.errors import InvalidStateError

router = APIRouter(tags=["ssh"])


class SshEndpoint(Protocol):
    """Where the SSH gateway listens."""

    @property
    def port(self) -> int: ...

    @property
    def public_host(self) -> str | None: ...


def _access(request: Request) -> SshAccess:
    access: SshAccess = request.app.state.ssh_access
    return access


@router.post("/v1/ssh-keys", status_code=201)
def add_ssh_key(body: SshKeyIn, request: Request, who: Writer) -> Envelope[SshKeyOut]:
    """Register a public key: it opens SSH sessions to every sandbox of the organisation."""
    key = _access(request).add_key(who.org_id, body.name, body.public_key)
    return Envelope(data=SshKeyOut.of(key))


@router.get("/v1/ssh-keys")
def list_ssh_keys(request: Request, who: Reader) -> Envelope[list[SshKeyOut]]:
    return Envelope(data=[SshKeyOut.of(k) for k in _access(request).list_keys(who.org_id)])


@router.delete("/v1/ssh-keys/{key}")
def delete_ssh_key(key: str, request: Request, who: Writer) -> Envelope[SshKeyOut]:
    """Remove a key by id or name; new logins with it are refused at once."""
    return Envelope(data=SshKeyOut.of(_access(request).delete_key(who.org_id, key)))


@router.get("/v1/sandboxes/{sandbox_id}/ssh")
def sandbox_ssh(
    sandbox_id: SandboxId, request: Request, who: Reader, svc: Service
) -> Envelope[SshInfoOut]:
    """Host, port and username for `ssh`; the host is the one this request reached
    unless the gateway listens on a specific address."""
    view = svc.records.get(who.org_id, sandbox_id)
    endpoint: SshEndpoint | None = request.app.state.ssh
    if endpoint is None:
        raise InvalidStateError(
            "this server runs without the SSH gateway (ssh_port is 0)",
            details={"sandboxId": sandbox_id},
        )
    host = endpoint.public_host or request.url.hostname or "localhost"
    command = shlex.join(["ssh", "-p", str(endpoint.port), f"{view.id}@{host}"])
    return Envelope(
        data=SshInfoOut(host=host, port=endpoint.port, username=view.id, command=command)
    )
