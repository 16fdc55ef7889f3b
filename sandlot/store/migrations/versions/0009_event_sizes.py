"""Events record their size, so stored bytes are budgeted per sandbox and per org.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("size", sa.Integer(), nullable=False, server_default="0"))
    text = "CAST(data AS TEXT)" if op.get_bind().dialect.name == "postgresql" else "data"
    op.execute(f"UPDATE events SET size = length({text}) + length(type)")


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("size")
