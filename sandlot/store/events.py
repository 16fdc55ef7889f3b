"""Persisted events: appended in batches, read back after a cursor, pruned by age and
trimmed, oldest first, to a budget of bytes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, func, select
from sqlalchemy.orm import Session

from sandlot.store.tables import EventRow

__all__ = ["EventRow", "after", "append", "last_id", "prune", "stored_bytes", "trim"]


def append(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert events in order; returns their ids."""
    objects = [EventRow(**row) for row in rows]
    session.add_all(objects)
    session.flush()
    return [o.id for o in objects]


def after(
    session: Session,
    org_id: str,
    since: int,
    *,
    sandbox_id: str | None = None,
    types: frozenset[str] | None = None,
    limit: int = 10_000,
) -> Sequence[EventRow]:
    query = select(EventRow).where(EventRow.org_id == org_id, EventRow.id > since)
    if sandbox_id is not None:
        query = query.where(EventRow.sandbox_id == sandbox_id)
    if types:
        query = query.where(EventRow.type.in_(types))
    return session.scalars(query.order_by(EventRow.id).limit(limit)).all()


def last_id(session: Session) -> int:
    """The newest event's id (0 with none): where a stream that starts now begins."""
    return int(session.scalar(select(func.max(EventRow.id))) or 0)


def prune(session: Session, before: datetime) -> int:
    result = cast(CursorResult[Any], session.execute(delete(EventRow).where(EventRow.at < before)))
    return result.rowcount or 0


def _owned_by(org_id: str, sandbox_id: str | None) -> ColumnElement[bool]:
    """An organisation's events, or one of its sandboxes' when `sandbox_id` is given."""
    if sandbox_id is None:
        return EventRow.org_id == org_id
    return (EventRow.org_id == org_id) & (EventRow.sandbox_id == sandbox_id)


def stored_bytes(session: Session, org_id: str, sandbox_id: str | None = None) -> int:
    """What an organisation's (or one sandbox's) events cost the store now."""
    query = select(func.coalesce(func.sum(EventRow.size), 0)).where(_owned_by(org_id, sandbox_id))
    return int(session.scalar(query) or 0)


def trim(session: Session, org_id: str, sandbox_id: str | None, keep: int) -> dict[str | None, int]:
    """Delete the oldest events of an organisation (or one sandbox) until the newest ones
    left cost at most `keep` bytes; returns the bytes removed per sandbox (None: events
    of the organisation itself), so callers keeping running totals can follow."""
    owned = _owned_by(org_id, sandbox_id)
    newer = func.sum(EventRow.size).over(order_by=EventRow.id.desc()).label("newer")
    ranked = select(EventRow.id, newer).where(owned).subquery()
    cutoff = session.scalar(
        select(ranked.c.id).where(ranked.c.newer > keep).order_by(ranked.c.id.desc()).limit(1)
    )
    if cutoff is None:
        return {}
    doomed = owned & (EventRow.id <= cutoff)
    removed = session.execute(
        select(EventRow.sandbox_id, func.sum(EventRow.size))
        .where(doomed)
        .group_by(EventRow.sandbox_id)
    ).all()
    session.execute(delete(EventRow).where(doomed))
    return {sandbox: int(size or 0) for sandbox, size in removed}
