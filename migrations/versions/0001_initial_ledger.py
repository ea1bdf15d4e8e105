"""initial ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""

    op.create_table(
        "audit_chains",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_chains")),
    )
    op.create_table(
        "audit_events",
        sa.Column("chain", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("response_id", sa.String(length=200), nullable=True),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_response_id", ["response_id"], unique=False)
        batch_op.create_index("ix_audit_events_ts", ["ts"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("response_id", sa.String(length=200), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("previous_response_id", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("deadline_basis", sa.String(length=16), nullable=False),
        sa.Column("hold", sa.String(length=128), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint(
            "provider", "response_id", name=op.f("uq_records_provider_response_id")
        ),
        sa.CheckConstraint(
            "due_at IS NULL OR state = 'pending'", name=op.f("ck_records_due_only_when_pending")
        ),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_records_due",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("due_at IS NOT NULL"),
            postgresql_where=sa.text("due_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_records_provider_due",
            ["provider", "due_at"],
            unique=False,
            sqlite_where=sa.text("due_at IS NOT NULL"),
            postgresql_where=sa.text("due_at IS NOT NULL"),
        )
        batch_op.create_index("ix_records_response_id", ["response_id"], unique=False)
        batch_op.create_index("ix_records_state", ["state"], unique=False)


def downgrade() -> None:
    """Revert this revision."""

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_state")
        batch_op.drop_index("ix_records_response_id")
        batch_op.drop_index("ix_records_provider_due")
        batch_op.drop_index(
            "ix_records_due",
            sqlite_where=sa.text("due_at IS NOT NULL"),
            postgresql_where=sa.text("due_at IS NOT NULL"),
        )

    op.drop_table("records")
    op.drop_table("meta")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_ts")
        batch_op.drop_index("ix_audit_events_response_id")

    op.drop_table("audit_events")
    op.drop_table("audit_chains")
