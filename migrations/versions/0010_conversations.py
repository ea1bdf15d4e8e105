"""Records of other objects than responses: conversations, with their last activity and the
count of their items deleted so far.

`object` is `response` for every record made before (the server default fills them);
`last_activity_at` is a conversation's last recorded turn (`ttl_from: last_activity` counts
from it); `items_deleted` counts a conversation's items deleted so far, so that a deletion cut
by a crash resumes with the count it had.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records") as batch:
        batch.add_column(
            sa.Column("object", sa.String(length=32), nullable=False, server_default="response")
        )
        batch.add_column(sa.Column("last_activity_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("items_deleted", sa.Integer(), nullable=True))
    op.create_index(  # the views count conversations by state without reading the responses
        "ix_records_object_state",
        "records",
        ["object", "state"],
        sqlite_where=sa.text("object != 'response'"),
        postgresql_where=sa.text("object != 'response'"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_records_object_state", table_name="records")
    with op.batch_alter_table("records") as batch:
        batch.drop_column("items_deleted")
        batch.drop_column("last_activity_at")
        batch.drop_column("object")
