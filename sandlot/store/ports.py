"""Queries over the ports a sandbox exposes through the preview proxy."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sandlot.store.tables import PortRow


def of_sandbox(session: Session, sandbox_id: str) -> Sequence[PortRow]:
    query = select(PortRow).where(PortRow.sandbox_id == sandbox_id).order_by(PortRow.port)
    return session.scalars(query).all()


def put(session: Session, row: PortRow) -> None:
    """Insert, or replace the port's earlier exposure (a new token voids the old one)."""
    session.merge(row)


def remove(session: Session, sandbox_id: str, port: int) -> bool:
    result = session.execute(
        delete(PortRow).where(PortRow.sandbox_id == sandbox_id, PortRow.port == port)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
