"""Organisations and API keys, for operators holding an admin key."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field

from sandlot.api.deps import Operator
from sandlot.api.schemas import Envelope, Model
from sandlot.core.tenancy import KeyView, OrgView, Quotas, Tenancy

router = APIRouter(tags=["keys"])

Scope = Literal["sandboxes:read", "sandboxes:write", "admin"]


class OrgIn(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class QuotasIn(Model):
    """Limits on what the organisation holds at once; null restores the server default."""

    max_sandboxes: int | None = Field(default=None, ge=1, le=100_000)
    max_vcpus: int | None = Field(default=None, ge=1, le=1_000_000)
    max_memory_mb: int | None = Field(default=None, ge=128, le=1 << 40)


class OrgOut(Model):
    id: str
    name: str
    created_at: datetime
    quotas: QuotasIn

    @classmethod
    def of(cls, org: OrgView) -> OrgOut:
        quotas = QuotasIn(**dataclasses.asdict(org.quotas))
        return cls(id=org.id, name=org.name, created_at=org.created_at, quotas=quotas)


class KeyIn(Model):
    org: str = Field(min_length=1, description="Organisation id or name.")
    name: str = Field(default="key", min_length=1, max_length=128)
    scopes: list[Scope] = Field(default=["sandboxes:read", "sandboxes:write"], min_length=1)


class KeyOut(Model):
    id: str
    org: str
    name: str
    scopes: list[str]
    created_at: datetime

    @classmethod
    def of(cls, key: KeyView) -> KeyOut:
        return cls(
            id=key.id,
            org=key.org_id,
            name=key.name,
            scopes=list(key.scopes),
            created_at=key.created_at,
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="The secret; shown only in this answer.")


def _tenancy(request: Request) -> Tenancy:
    tenancy: Tenancy = request.app.state.authenticator.tenancy
    return tenancy


@router.post("/v1/orgs", status_code=201)
def create_org(body: OrgIn, request: Request, who: Operator) -> Envelope[OrgOut]:
    return Envelope(data=OrgOut.of(_tenancy(request).create_org(body.name)))


@router.get("/v1/orgs")
def list_orgs(request: Request, who: Operator) -> Envelope[list[OrgOut]]:
    return Envelope(data=[OrgOut.of(o) for o in _tenancy(request).orgs()])


@router.put("/v1/orgs/{org}/quotas")
def set_quotas(org: str, body: QuotasIn, request: Request, who: Operator) -> Envelope[OrgOut]:
    """Set an organisation's quotas (by id or name); creating past them answers
    RESOURCE_EXHAUSTED."""
    quotas = Quotas(body.max_sandboxes, body.max_vcpus, body.max_memory_mb)
    return Envelope(data=OrgOut.of(_tenancy(request).set_quotas(org, quotas)))


@router.post("/v1/keys", status_code=201)
def create_key(body: KeyIn, request: Request, who: Operator) -> Envelope[NewKeyOut]:
    key, secret = _tenancy(request).create_key(body.org, body.name, tuple(body.scopes))
    return Envelope(data=NewKeyOut(**KeyOut.of(key).model_dump(), key=secret))


@router.get("/v1/keys")
def list_keys(request: Request, who: Operator, org: str | None = None) -> Envelope[list[KeyOut]]:
    """Active keys (never their secrets), of one organisation with `org`."""
    return Envelope(data=[KeyOut.of(k) for k in _tenancy(request).keys(org)])


@router.delete("/v1/keys/{key_id}")
def revoke_key(key_id: str, request: Request, who: Operator) -> Envelope[KeyOut]:
    """Revoke a key; it stops working at once."""
    out = KeyOut.of(_tenancy(request).revoke_key(key_id))
    request.app.state.authenticator.forget(key_id)
    return Envelope(data=out)
