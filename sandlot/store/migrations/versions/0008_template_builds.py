"""Template builds and imports; layered templates store several layers per sandbox.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_builds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "org_id", sa.String(32), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("template", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("digest", sa.String(64), nullable=True),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("cached_steps", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_template_builds_org", "template_builds", ["org_id"])
    for table in ("sandboxes", "snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("rootfs", type_=sa.Text, existing_type=sa.String(1024))


def downgrade() -> None:
    for table in ("sandboxes", "snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("rootfs", type_=sa.String(1024), existing_type=sa.Text)
    op.drop_index("ix_template_builds_org", "template_builds")
    op.drop_table("template_builds")
