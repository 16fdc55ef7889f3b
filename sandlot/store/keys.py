"""Organisations and API keys. Keys are stored as SHA-256 digests and shown once.

A plain digest (not a slow password hash) is right here: keys are 32 random bytes, so
there is nothing to brute-force, and every request has to look one up.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandlot.store.tables import ApiKey, Org

KEY_PREFIX = "sl_"
OPERATOR_ORG = "admin"
"""The organisation `sandlot serve` creates first; its admin keys run the whole server."""
ALL_SCOPES = ("sandboxes:read", "sandboxes:write", "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_org(session: Session, name: str) -> Org:
    org = Org(id=f"org-{secrets.token_hex(6)}", name=name, created_at=datetime.now(UTC))
    session.add(org)
    session.flush()
    return org


def get_org_by_name(session: Session, name: str) -> Org | None:
    return session.scalars(select(Org).where(Org.name == name)).first()


def create_key(
    session: Session, org_id: str, name: str, scopes: tuple[str, ...] = ALL_SCOPES
) -> tuple[ApiKey, str]:
    """Returns the row and the secret, which exists nowhere else after this call."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=f"key-{secrets.token_hex(6)}",
        org_id=org_id,
        name=name,
        key_hash=hash_key(secret),
        scopes=list(scopes),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row, secret


def find_key(session: Session, secret: str) -> ApiKey | None:
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


def list_orgs(session: Session) -> Sequence[Org]:
    return session.scalars(select(Org).order_by(Org.created_at)).all()


def get_org(session: Session, org_ref: str) -> Org | None:
    """An organisation by id, else by name: an id is never shadowed by a name."""
    return session.get(Org, org_ref) or get_org_by_name(session, org_ref)


def list_keys(session: Session, org_id: str | None = None) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    return session.scalars(query.order_by(ApiKey.created_at)).all()


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    return row
