"""Persisted events: appended in batches, read back after a cursor, pruned by age."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from sandlot.store.tables import EventRow

__all__ = ["EventRow", "after", "append", "last_id", "prune"]


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
