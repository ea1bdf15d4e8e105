"""Erasure by data subject: subject digests per record, erasure requests and their records.

`record_subjects` holds the HMAC of each subject pair of a record (never the value), keyed by
the digest first so an erasure looks a person up by index. Records already in the ledger are
indexed afterwards, in batches, by the commands and the daemon (services/subject_index.py):
this migration notes the highest record id it found, and `doctor` reports until the backfill
has passed it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erasure_id", sa.String(length=40), nullable=True))
    op.create_table(
        "record_subjects",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("response_id", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint(
            "subject", "provider", "response_id", name=op.f("pk_record_subjects")
        ),
    )
    op.create_table(
        "erasures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subjects", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("due_by", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ticket", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("overdue_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )
    op.create_index("ix_erasures_state", "erasures", ["state"])
    op.create_table(
        "erasure_items",
        sa.Column("erasure_id", sa.String(length=40), nullable=False),
        sa.Column("record_id", BigId, nullable=False),
        sa.Column("withheld", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("erasure_id", "record_id", name=op.f("pk_erasure_items")),
    )
    op.execute(
        "INSERT INTO meta (key, value) SELECT 'erasure:backfill_until', "
        "CAST(COALESCE(MAX(id), 0) AS VARCHAR(32)) FROM records"
    )
    op.execute("INSERT INTO meta (key, value) VALUES ('erasure:backfill_after', '0')")


def downgrade() -> None:
    """Revert this revision."""
    op.execute("DELETE FROM meta WHERE key LIKE 'erasure:%'")
    op.drop_table("erasure_items")
    op.drop_index("ix_erasures_state", table_name="erasures")
    op.drop_table("erasures")
    op.drop_table("record_subjects")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("erasure_id")
