"""Per-organisation quotas on live sandboxes, vCPUs and memory.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = ("max_sandboxes", "max_vcpus", "max_memory_mb")


def upgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
