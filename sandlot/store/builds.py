"""Queries over template build rows, scoped to one organisation (None: the operator)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandlot.store.sandboxes import LIVE_STATUSES
from sandlot.store.tables import SandboxRow, TemplateBuildRow


def get(session: Session, org_id: str | None, build_id: str) -> TemplateBuildRow | None:
    row = session.get(TemplateBuildRow, build_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        return None
    return row


def of_org(session: Session, org_id: str) -> Sequence[TemplateBuildRow]:
    query = select(TemplateBuildRow).where(TemplateBuildRow.org_id == org_id)
    return session.scalars(query.order_by(TemplateBuildRow.created_at.desc())).all()


def unfinished(session: Session) -> Sequence[TemplateBuildRow]:
    query = select(TemplateBuildRow).where(TemplateBuildRow.status.not_in(("ready", "failed")))
    return session.scalars(query).all()


def step_sandboxes(session: Session, prefix: str) -> Sequence[SandboxRow]:
    """Live sandboxes that ran a build's step (their template name starts with `prefix`)."""
    query = select(SandboxRow).where(
        SandboxRow.template.startswith(prefix), SandboxRow.status.in_(LIVE_STATUSES)
    )
    return session.scalars(query).all()
