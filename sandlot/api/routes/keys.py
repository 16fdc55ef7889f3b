"""Organisations and API keys, for operators holding an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field
from sqlalchemy.exc import IntegrityError

from sandlot.api.deps import Operator
from sandlot.api.schemas import Envelope, Model
from sandlot.errors import InvalidConfigError, KeyNotFoundError
from sandlot.store import keys as key_rows
from sandlot.store.database import Database
from sandlot.store.tables import ApiKey, Org

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
    def of(cls, org: Org) -> OrgOut:
        quotas = QuotasIn(
            max_sandboxes=org.max_sandboxes,
            max_vcpus=org.max_vcpus,
            max_memory_mb=org.max_memory_mb,
        )
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
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id,
            org=row.org_id,
            name=row.name,
            scopes=list(row.scopes),
            created_at=row.created_at,
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="The secret; shown only in this answer.")


def _db(request: Request) -> Database:
    db: Database = request.app.state.authenticator.db
    return db


@router.post("/v1/orgs", status_code=201)
def create_org(body: OrgIn, request: Request, who: Operator) -> Envelope[OrgOut]:
    try:
        with _db(request).session() as s:
            return Envelope(data=OrgOut.of(key_rows.create_org(s, body.name)))
    except IntegrityError:
        raise InvalidConfigError(
            f"an organisation named {body.name!r} exists already", details={"field": "name"}
        ) from None


@router.get("/v1/orgs")
def list_orgs(request: Request, who: Operator) -> Envelope[list[OrgOut]]:
    with _db(request).session() as s:
        return Envelope(data=[OrgOut.of(o) for o in key_rows.list_orgs(s)])


@router.put("/v1/orgs/{org}/quotas")
def set_quotas(org: str, body: QuotasIn, request: Request, who: Operator) -> Envelope[OrgOut]:
    """Set an organisation's quotas (by id or name); creating past them answers
    RESOURCE_EXHAUSTED."""
    with _db(request).session() as s:
        found = key_rows.get_org(s, org)
        if found is None:
            raise InvalidConfigError(f"no organisation {org!r}", details={"field": "org"})
        found.max_sandboxes = body.max_sandboxes
        found.max_vcpus = body.max_vcpus
        found.max_memory_mb = body.max_memory_mb
        return Envelope(data=OrgOut.of(found))


@router.post("/v1/keys", status_code=201)
def create_key(body: KeyIn, request: Request, who: Operator) -> Envelope[NewKeyOut]:
    with _db(request).session() as s:
        org = key_rows.get_org(s, body.org)
        if org is None:
            raise InvalidConfigError(f"no organisation {body.org!r}", details={"field": "org"})
        row, secret = key_rows.create_key(s, org.id, body.name, tuple(body.scopes))
        return Envelope(data=NewKeyOut(**KeyOut.of(row).model_dump(), key=secret))


@router.get("/v1/keys")
def list_keys(request: Request, who: Operator, org: str | None = None) -> Envelope[list[KeyOut]]:
    """Active keys (never their secrets), of one organisation with `org`."""
    with _db(request).session() as s:
        org_id = None
        if org is not None:
            found = key_rows.get_org(s, org)
            if found is None:
                raise InvalidConfigError(f"no organisation {org!r}", details={"field": "org"})
            org_id = found.id
        return Envelope(data=[KeyOut.of(k) for k in key_rows.list_keys(s, org_id)])


@router.delete("/v1/keys/{key_id}")
def revoke_key(key_id: str, request: Request, who: Operator) -> Envelope[KeyOut]:
    """Revoke a key; it stops working at once."""
    with _db(request).session() as s:
        row = key_rows.revoke_key(s, key_id)
        if row is None:
            raise KeyNotFoundError(f"no API key {key_id!r}", details={"keyId": key_id})
        out = KeyOut.of(row)
    request.app.state.authenticator.forget(key_id)
    return Envelope(data=out)
