"""Persisted events, the cursor for clients that resume a stream.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(32), nullable=False),
        sa.Column("sandbox_id", sa.String(32), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_events_org_id", "events", ["org_id", "id"])
    op.create_index("ix_events_sandbox_id", "events", ["sandbox_id"])


def downgrade() -> None:
    op.drop_table("events")
