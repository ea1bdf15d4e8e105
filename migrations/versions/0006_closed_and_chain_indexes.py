"""Index only closed rows by closed_at; index chain roots per provider.

The closed_at index only ever serves ranges of closed records, so pending ones stay out of it
(every insert paid for it). Every chain query names the provider too, and with only
`chain_root` indexed SQLite walked all of a provider's records instead, which made a large
import quadratic: the index is now on (provider, chain_root).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.drop_index("ix_records_closed_at", table_name="records")
    _closed_at_index(text("closed_at IS NOT NULL"))
    op.drop_index("ix_records_chain_root", table_name="records")
    op.create_index("ix_records_provider_chain_root", "records", ["provider", "chain_root"])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index("ix_records_closed_at", table_name="records")
    _closed_at_index(None)
    op.drop_index("ix_records_provider_chain_root", table_name="records")
    op.create_index("ix_records_chain_root", "records", ["chain_root"])


def _closed_at_index(where: object) -> None:
    """ix_records_closed_at, partial when `where` is given."""
    op.create_index(
        "ix_records_closed_at",
        "records",
        ["closed_at"],
        sqlite_where=where,
        postgresql_where=where,
    )
