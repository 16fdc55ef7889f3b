"""SSH public keys registered to an organisation."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandlot.store.tables import SshKeyRow


def add(session: Session, org_id: str, name: str, public_key: str, fingerprint: str) -> SshKeyRow:
    row = SshKeyRow(
        id=f"sshk-{secrets.token_hex(6)}",
        org_id=org_id,
        name=name,
        public_key=public_key,
        fingerprint=fingerprint,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    return row


def of_org(session: Session, org_id: str) -> Sequence[SshKeyRow]:
    query = select(SshKeyRow).where(SshKeyRow.org_id == org_id).order_by(SshKeyRow.created_at)
    return session.scalars(query).all()


def find(session: Session, org_id: str, ref: str) -> SshKeyRow | None:
    """A key of `org_id` by id or by name."""
    query = select(SshKeyRow).where(
        SshKeyRow.org_id == org_id, (SshKeyRow.id == ref) | (SshKeyRow.name == ref)
    )
    return session.scalars(query).first()


def conflicting(session: Session, org_id: str, name: str, fingerprint: str) -> SshKeyRow | None:
    """The key of `org_id` that already has this name or this fingerprint."""
    query = select(SshKeyRow).where(
        SshKeyRow.org_id == org_id,
        (SshKeyRow.name == name) | (SshKeyRow.fingerprint == fingerprint),
    )
    return session.scalars(query).first()


def has_fingerprint(session: Session, org_id: str, fingerprint: str) -> bool:
    query = select(SshKeyRow.id).where(
        SshKeyRow.org_id == org_id, SshKeyRow.fingerprint == fingerprint
    )
    return session.scalars(query).first() is not None
