"""Organisations, their API keys and quotas: what the key routes, authentication and the
first start ask of the store, as plain values, so no route touches a row or a session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sandlot.errors import InvalidConfigError, KeyNotFoundError
from sandlot.store import keys as key_rows
from sandlot.store.database import Database
from sandlot.store.tables import ApiKey, Org

OPERATOR_ORG = key_rows.OPERATOR_ORG
ORG_ID = re.compile(r"org-[0-9a-f]{12}")
"""The form of the ids `store/keys.py` gives organisations."""


@dataclass(frozen=True)
class Quotas:
    """Limits on what an organisation holds at once; None is the server's default."""

    max_sandboxes: int | None = None
    max_vcpus: int | None = None
    max_memory_mb: int | None = None


@dataclass(frozen=True)
class OrgView:
    id: str
    name: str
    created_at: datetime
    quotas: Quotas

    @classmethod
    def of(cls, row: Org) -> OrgView:
        quotas = Quotas(row.max_sandboxes, row.max_vcpus, row.max_memory_mb)
        return cls(row.id, row.name, row.created_at, quotas)


@dataclass(frozen=True)
class KeyView:
    id: str
    org_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime

    @classmethod
    def of(cls, row: ApiKey) -> KeyView:
        return cls(row.id, row.org_id, row.name, tuple(row.scopes), row.created_at)


class Tenancy:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create_org(self, name: str) -> OrgView:
        if ORG_ID.fullmatch(name):
            raise InvalidConfigError(
                f"an organisation's name cannot have the form of an organisation id "
                f"({name!r}): commands that take either would be ambiguous",
                details={"field": "name"},
            )
        try:
            with self.db.session() as s:
                return OrgView.of(key_rows.create_org(s, name))
        except IntegrityError:
            raise InvalidConfigError(
                f"an organisation named {name!r} exists already", details={"field": "name"}
            ) from None

    def orgs(self) -> list[OrgView]:
        with self.db.session() as s:
            return [OrgView.of(o) for o in key_rows.list_orgs(s)]

    def set_quotas(self, org_ref: str, quotas: Quotas) -> OrgView:
        with self.db.session() as s:
            org = _org(s, org_ref)
            org.max_sandboxes = quotas.max_sandboxes
            org.max_vcpus = quotas.max_vcpus
            org.max_memory_mb = quotas.max_memory_mb
            return OrgView.of(org)

    def create_key(
        self, org_ref: str, name: str, scopes: tuple[str, ...] = key_rows.ALL_SCOPES
    ) -> tuple[KeyView, str]:
        """The key and its secret, which exists nowhere else after this call."""
        with self.db.session() as s:
            row, secret = key_rows.create_key(s, _org(s, org_ref).id, name, scopes)
            return KeyView.of(row), secret

    def keys(self, org_ref: str | None = None) -> list[KeyView]:
        """Active keys, of one organisation (by id or name) when given."""
        with self.db.session() as s:
            org_id = None if org_ref is None else _org(s, org_ref).id
            return [KeyView.of(k) for k in key_rows.list_keys(s, org_id)]

    def revoke_key(self, key_id: str) -> KeyView:
        with self.db.session() as s:
            row = key_rows.revoke_key(s, key_id)
            if row is None:
                raise KeyNotFoundError(f"no API key {key_id!r}", details={"keyId": key_id})
            return KeyView.of(row)

    def key_for(self, secret: str) -> KeyView | None:
        """The active key whose secret this is."""
        with self.db.session() as s:
            row = key_rows.find_key(s, secret)
            return None if row is None else KeyView.of(row)

    def operator_org_id(self) -> str | None:
        with self.db.session() as s:
            org = key_rows.get_org_by_name(s, OPERATOR_ORG)
            return org.id if org else None

    def ensure_operator(self) -> str | None:
        """The operator organisation and its first admin key, made on a server's first
        start; returns that key's secret then, and None ever after."""
        with self.db.session() as s:
            if key_rows.get_org_by_name(s, OPERATOR_ORG) is not None:
                return None
            org = key_rows.create_org(s, OPERATOR_ORG)
            _, secret = key_rows.create_key(s, org.id, "admin")
            return secret


def _org(s: Session, org_ref: str) -> Org:
    """An organisation by id or name, or a clear refusal naming what was asked for."""
    org = key_rows.get_org(s, org_ref)
    if org is None:
        raise InvalidConfigError(f"no organisation {org_ref!r}", details={"field": "org"})
    return org
