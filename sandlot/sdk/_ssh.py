"""SSH access: the organisation's public keys (`client.ssh_keys`) and where a sandbox
answers `ssh` (`sbx.get_ssh()`)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from pydantic import TypeAdapter

from sandlot.sdk._http import AsyncTransport, Call, SyncTransport, sandbox_path
from sandlot.sdk._models import _Model


class SshKeyInfo(_Model):
    id: str
    name: str
    public_key: str
    fingerprint: str
    """As `ssh-keygen -l` prints it: `SHA256:…`."""
    created_at: datetime


class SshInfo(_Model):
    """Where to point OpenSSH: `ssh -p PORT USERNAME@HOST`."""

    host: str
    port: int
    username: str
    command: str
    """A ready command line that opens a shell (add `-i KEY` to pick a key)."""


_KEYS = TypeAdapter(list[SshKeyInfo])


def _add_call(name: str, public_key: str) -> Call[SshKeyInfo]:
    body = {"name": name, "publicKey": public_key}
    return Call("POST", "/v1/ssh-keys", parse=SshKeyInfo.model_validate, json=body)


def _list_call() -> Call[list[SshKeyInfo]]:
    return Call("GET", "/v1/ssh-keys", parse=_KEYS.validate_python)


def _delete_call(id_or_name: str) -> Call[SshKeyInfo]:
    path = f"/v1/ssh-keys/{quote(id_or_name, safe='')}"
    return Call("DELETE", path, parse=SshKeyInfo.model_validate)


def ssh_info_call(sandbox_id: str) -> Call[SshInfo]:
    return Call("GET", sandbox_path(sandbox_id, "/ssh"), parse=SshInfo.model_validate)


class SshKeys:
    """Public keys that open SSH sessions to every sandbox of the organisation."""

    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def add(self, name: str, public_key: str) -> SshKeyInfo:
        """Register `public_key` (an OpenSSH line, e.g. the content of id_ed25519.pub)."""
        return self._transport.send(_add_call(name, public_key))

    def list(self) -> list[SshKeyInfo]:
        return self._transport.send(_list_call())

    def delete(self, id_or_name: str) -> SshKeyInfo:
        return self._transport.send(_delete_call(id_or_name))


class AsyncSshKeys:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def add(self, name: str, public_key: str) -> SshKeyInfo:
        return await self._transport.send(_add_call(name, public_key))

    async def list(self) -> list[SshKeyInfo]:
        return await self._transport.send(_list_call())

    async def delete(self, id_or_name: str) -> SshKeyInfo:
        return await self._transport.send(_delete_call(id_or_name))
