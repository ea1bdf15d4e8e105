"""Index records by closed_at, so `retention report` over a time range reads only that range.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_closed_at", ["closed_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_closed_at")
