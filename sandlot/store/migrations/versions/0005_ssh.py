"""SSH access: public keys registered to an organisation, a sandbox's own password.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sandlot.store.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "org_id", sa.String(32), sa.ForeignKey("orgs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("org_id", "fingerprint", name="uq_ssh_keys_fingerprint"),
        sa.UniqueConstraint("org_id", "name", name="uq_ssh_keys_name"),
    )
    op.create_index("ix_ssh_keys_org", "ssh_keys", ["org_id"])
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sandboxes") as batch:
        batch.drop_column("password_hash")
    op.drop_table("ssh_keys")
