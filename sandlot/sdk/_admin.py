"""Organisations and API keys, for holders of an admin key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import TypeAdapter

from sandlot.sdk._http import AsyncTransport, Call, SyncTransport
from sandlot.sdk._models import _Model


class Quotas(_Model):
    """None means the server's default."""

    max_sandboxes: int | None = None
    max_vcpus: int | None = None
    max_memory_mb: int | None = None


class OrgInfo(_Model):
    id: str
    name: str
    created_at: datetime
    quotas: Quotas = Quotas()


class KeyInfo(_Model):
    id: str
    org: str
    name: str
    scopes: list[str]
    created_at: datetime


class NewKey(KeyInfo):
    key: str
    """The secret: shown in this answer only."""


_ORGS = TypeAdapter(list[OrgInfo])
_KEYS = TypeAdapter(list[KeyInfo])
DEFAULT_SCOPES = ("sandboxes:read", "sandboxes:write")


def _create_org(name: str) -> Call[OrgInfo]:
    return Call("POST", "/v1/orgs", parse=OrgInfo.model_validate, json={"name": name})


def _list_orgs() -> Call[list[OrgInfo]]:
    return Call("GET", "/v1/orgs", parse=_ORGS.validate_python)


def _set_quotas(org: str, quotas: Quotas) -> Call[OrgInfo]:
    body = quotas.to_api()
    return Call("PUT", f"/v1/orgs/{org}/quotas", parse=OrgInfo.model_validate, json=body)


def _create_key(org: str, scopes: Sequence[str], name: str) -> Call[NewKey]:
    body = {"org": org, "scopes": list(scopes), "name": name}
    return Call("POST", "/v1/keys", parse=NewKey.model_validate, json=body)


def _list_keys(org: str | None) -> Call[list[KeyInfo]]:
    params: dict[str, str | int] = {"org": org} if org else {}
    return Call("GET", "/v1/keys", parse=_KEYS.validate_python, params=params)


def _revoke_key(key_id: str) -> Call[KeyInfo]:
    return Call("DELETE", f"/v1/keys/{key_id}", parse=KeyInfo.model_validate)


class Orgs:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self, name: str) -> OrgInfo:
        return self._transport.send(_create_org(name))

    def list(self) -> list[OrgInfo]:
        return self._transport.send(_list_orgs())

    def set_quotas(self, org: str, quotas: Quotas) -> OrgInfo:
        """Replace `org`'s quotas (id or name); fields left None take the defaults."""
        return self._transport.send(_set_quotas(org, quotas))


class Keys:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def create(self, org: str, scopes: Sequence[str] = DEFAULT_SCOPES, name: str = "key") -> NewKey:
        """A new key for `org` (id or name); its secret is in the result, and nowhere else."""
        return self._transport.send(_create_key(org, scopes, name))

    def list(self, org: str | None = None) -> list[KeyInfo]:
        return self._transport.send(_list_keys(org))

    def revoke(self, key_id: str) -> KeyInfo:
        return self._transport.send(_revoke_key(key_id))


class AsyncOrgs:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(self, name: str) -> OrgInfo:
        return await self._transport.send(_create_org(name))

    async def list(self) -> list[OrgInfo]:
        return await self._transport.send(_list_orgs())

    async def set_quotas(self, org: str, quotas: Quotas) -> OrgInfo:
        return await self._transport.send(_set_quotas(org, quotas))


class AsyncKeys:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def create(
        self, org: str, scopes: Sequence[str] = DEFAULT_SCOPES, name: str = "key"
    ) -> NewKey:
        return await self._transport.send(_create_key(org, scopes, name))

    async def list(self, org: str | None = None) -> list[KeyInfo]:
        return await self._transport.send(_list_keys(org))

    async def revoke(self, key_id: str) -> KeyInfo:
        return await self._transport.send(_revoke_key(key_id))
