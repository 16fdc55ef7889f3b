"""Queries on workspace volumes and their mounts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandlot.store.tables import SandboxRow, VolumeMountRow, VolumeRow

ENDED = ("terminated", "error")


def get(session: Session, org_id: str, name: str) -> VolumeRow | None:
    return session.scalars(
        select(VolumeRow).where(VolumeRow.org_id == org_id, VolumeRow.name == name)
    ).first()


def of_org(session: Session, org_id: str) -> Sequence[VolumeRow]:
    return session.scalars(
        select(VolumeRow).where(VolumeRow.org_id == org_id).order_by(VolumeRow.name)
    ).all()


def every(session: Session) -> Sequence[VolumeRow]:
    return session.scalars(select(VolumeRow)).all()


def size_held(session: Session, org_id: str) -> int:
    """MiB the organisation's volumes are sized at, together."""
    total = session.scalar(
        select(func.coalesce(func.sum(VolumeRow.size_mb), 0)).where(VolumeRow.org_id == org_id)
    )
    return int(total or 0)


def mounts_of(session: Session, sandbox_id: str) -> Sequence[tuple[VolumeMountRow, VolumeRow]]:
    rows = session.execute(
        select(VolumeMountRow, VolumeRow)
        .join(VolumeRow, VolumeRow.id == VolumeMountRow.volume_id)
        .where(VolumeMountRow.sandbox_id == sandbox_id)
        .order_by(VolumeMountRow.path)
    ).all()
    return [(m, v) for m, v in rows]


def mounted_by(session: Session, volume_id: str) -> list[str]:
    """The sandboxes not yet ended that mount the volume."""
    return list(
        session.scalars(
            select(VolumeMountRow.sandbox_id)
            .join(SandboxRow, SandboxRow.id == VolumeMountRow.sandbox_id)
            .where(VolumeMountRow.volume_id == volume_id, SandboxRow.status.not_in(ENDED))
            .order_by(VolumeMountRow.sandbox_id)
        ).all()
    )
