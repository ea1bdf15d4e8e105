"""Records remember the first turn of their conversation, for keep_chains_intact.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_root", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_records_chain_root", ["chain_root"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_chain_root")
        batch_op.drop_column("chain_root")
