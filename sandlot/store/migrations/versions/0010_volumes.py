"""Workspace volumes, the sandboxes that mount them, and an organisation's volume quota.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "org_id",
            sa.String(32),
            sa.ForeignKey("orgs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("size_mb", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "name", name="uq_volumes_name"),
    )
    op.create_index("ix_volumes_org_id", "volumes", ["org_id"])
    op.create_table(
        "volume_mounts",
        sa.Column("sandbox_id", sa.String(32), sa.ForeignKey("sandboxes.id", ondelete="CASCADE")),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column(
            "volume_id",
            sa.String(32),
            sa.ForeignKey("volumes.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("sandbox_id", "path"),
    )
    op.create_index("ix_volume_mounts_volume_id", "volume_mounts", ["volume_id"])
    with op.batch_alter_table("orgs") as batch:
        batch.add_column(sa.Column("max_volume_mb", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("max_volume_mb")
    op.drop_table("volume_mounts")
    op.drop_table("volumes")
