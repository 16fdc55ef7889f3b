"""Queries over sandbox rows, always scoped to one organisation where a caller is involved."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from sandlot.store.tables import SandboxRow, SnapshotRow

LIVE_STATUSES = ("creating", "running", "paused", "stopping")


def get(session: Session, sandbox_id: str, org_id: str | None = None) -> SandboxRow | None:
    query = select(SandboxRow).where(SandboxRow.id == sandbox_id)
    if org_id is not None:
        query = query.where(SandboxRow.org_id == org_id)
    return session.scalars(query).first()


def page(
    session: Session,
    org_id: str,
    *,
    status: str | None,
    metadata: dict[str, str],
    limit: int,
    offset: int,
) -> tuple[Sequence[SandboxRow], int]:
    """One page of an organisation's sandboxes, newest first, and the total that match."""
    query = select(SandboxRow).where(SandboxRow.org_id == org_id)
    if status is not None:
        query = query.where(SandboxRow.status == status)
    for key, value in metadata.items():
        query = query.where(SandboxRow.meta[key].as_string() == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(SandboxRow.created_at.desc(), SandboxRow.id).limit(limit).offset(offset)
    ).all()
    return rows, total


def live(session: Session) -> Sequence[SandboxRow]:
    return session.scalars(select(SandboxRow).where(SandboxRow.status.in_(LIVE_STATUSES))).all()


def overlapping(
    session: Session, org_id: str, start: datetime, end: datetime
) -> Sequence[SandboxRow]:
    """An organisation's sandboxes that ran at some time within [start, end]."""
    query = select(SandboxRow).where(
        SandboxRow.org_id == org_id,
        SandboxRow.started_at.is_not(None),
        SandboxRow.started_at <= end,
        or_(SandboxRow.ended_at.is_(None), SandboxRow.ended_at >= start),
    )
    return session.scalars(query.order_by(SandboxRow.started_at)).all()


def count_by_status(session: Session) -> dict[str, int]:
    query = select(SandboxRow.status, func.count()).group_by(SandboxRow.status)
    return {status: count for status, count in session.execute(query).tuples()}


def template_users(session: Session, template: str, org_id: str | None = None) -> list[str]:
    """Ids of live sandboxes and of snapshots made from `template` (of `org_id` alone,
    when the template is that organisation's own)."""
    sandboxes = select(SandboxRow.id).where(
        SandboxRow.template == template, SandboxRow.status.in_(LIVE_STATUSES)
    )
    snapshots = select(SnapshotRow.id).where(SnapshotRow.template == template)
    if org_id is not None:
        sandboxes = sandboxes.where(SandboxRow.org_id == org_id)
        snapshots = snapshots.where(SnapshotRow.org_id == org_id)
    return [*session.scalars(sandboxes).all(), *session.scalars(snapshots).all()]


def lowerdirs(session: Session) -> set[str]:
    """The layer stacks live sandboxes and snapshots stand on."""
    sandboxes = select(SandboxRow.rootfs).where(SandboxRow.status.in_(LIVE_STATUSES))
    return {*session.scalars(sandboxes).all(), *session.scalars(select(SnapshotRow.rootfs)).all()}
