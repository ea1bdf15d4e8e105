"""Each chain keeps the Merkle frontier of its records beside its head (RFC 9162 checkpoints).

The column starts empty; the first append after the upgrade computes it once from the chain's
records, and every append after that updates it in O(1) amortised.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("audit_chains", schema=None) as batch_op:
        batch_op.add_column(sa.Column("head_frontier", sa.Text(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("audit_chains", schema=None) as batch_op:
        batch_op.drop_column("head_frontier")
