"""Networking: a sandbox's policy and address, and the ports it exposes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("network", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("address", sa.String(64), nullable=True))
    op.create_table(
        "ports",
        sa.Column("sandbox_id", sa.String(32), sa.ForeignKey("sandboxes.id", ondelete="CASCADE")),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("auth", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sandbox_id", "port"),
    )


def downgrade() -> None:
    op.drop_table("ports")
    with op.batch_alter_table("sandboxes") as batch:
        batch.drop_column("network")
        batch.drop_column("address")
