"""Lifecycle: snapshots, their patches, and how a sandbox was paused.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "org_id", sa.String(32), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("sandbox_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("template", sa.String(128), nullable=False),
        sa.Column("template_digest", sa.String(64), nullable=False),
        sa.Column("rootfs", sa.String(1024), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_mb", sa.Integer(), nullable=False),
        sa.Column("env", sa.JSON(), nullable=False),
        sa.Column("has_memory", sa.Boolean(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "sandbox_id", "name", name="uq_snapshots_name"),
    )
    op.create_index("ix_snapshots_sandbox", "snapshots", ["sandbox_id"])
    op.create_table(
        "snapshot_patches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "snapshot_id",
            sa.String(32),
            sa.ForeignKey("snapshots.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_snapshot_patches_snapshot_id", "snapshot_patches", ["snapshot_id"])
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("pause_mode", sa.String(16), nullable=True))
        batch.add_column(sa.Column("paused_at", UtcDateTime(), nullable=True))
        batch.add_column(
            sa.Column("paused_ms", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("snapshot_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandboxes") as batch:
        for name in ("pause_mode", "paused_at", "paused_ms", "snapshot_id"):
            batch.drop_column(name)
    op.drop_table("snapshot_patches")
    op.drop_table("snapshots")
