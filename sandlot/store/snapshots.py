"""Queries over snapshot rows, scoped to one organisation."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sandlot.store.tables import SnapshotPatchRow, SnapshotRow


def find(
    session: Session, org_id: str | None, ref: str, sandbox_id: str | None = None
) -> SnapshotRow | None:
    """A snapshot by id, or by name within one sandbox's snapshots."""
    query = select(SnapshotRow).where(SnapshotRow.status == "ready")
    if org_id is not None:
        query = query.where(SnapshotRow.org_id == org_id)
    if sandbox_id is None:
        query = query.where(SnapshotRow.id == ref)
    else:
        query = query.where(
            SnapshotRow.sandbox_id == sandbox_id,
            or_(SnapshotRow.id == ref, SnapshotRow.name == ref),
        )
    return session.scalars(query).first()


def of_org(session: Session, org_id: str, sandbox_id: str | None) -> Sequence[SnapshotRow]:
    query = select(SnapshotRow).where(SnapshotRow.org_id == org_id)
    if sandbox_id is not None:
        query = query.where(SnapshotRow.sandbox_id == sandbox_id)
    return session.scalars(query.order_by(SnapshotRow.created_at, SnapshotRow.id)).all()


def unfinished(session: Session) -> Sequence[SnapshotRow]:
    """Snapshots a crash interrupted while they were being taken."""
    return session.scalars(select(SnapshotRow).where(SnapshotRow.status != "ready")).all()


def patches(session: Session, snapshot_id: str) -> Sequence[SnapshotPatchRow]:
    query = select(SnapshotPatchRow).where(SnapshotPatchRow.snapshot_id == snapshot_id)
    return session.scalars(query.order_by(SnapshotPatchRow.revision)).all()
