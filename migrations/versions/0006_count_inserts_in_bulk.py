"""Count inserted records once per batch instead of once per row; index only closed rows by
closed_at; index chain roots per provider.

The insert trigger of 0005 cost more than the rest of an insert (a statement journal per row),
which held bulk imports to a few thousand IDs a second. Inserts now bump `record_counts` once
per provider and state per batch, in the inserting transaction (`store.insert_records`, the
only place records are inserted); state changes and deletes keep their triggers. The closed_at
index only ever serves ranges of closed records, so pending ones stay out of it. Every chain
query names the provider too, and with only `chain_root` indexed SQLite walked all of a
provider's records instead: the index is now on (provider, chain_root).

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

SQLITE_INSERT_TRIGGER = """CREATE TRIGGER records_count_insert AFTER INSERT ON records BEGIN
    INSERT INTO record_counts (provider, state, n) VALUES (NEW.provider, NEW.state, 1)
    ON CONFLICT (provider, state) DO UPDATE SET n = record_counts.n + 1; END"""


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
        op.execute("DROP TRIGGER records_count_insert_delete ON records")
        op.execute(
            """CREATE TRIGGER records_count_delete AFTER DELETE ON records
               FOR EACH ROW EXECUTE FUNCTION records_count()"""
        )
    else:
        op.execute("DROP TRIGGER records_count_insert")
    op.drop_index("ix_records_closed_at", table_name="records")
    _closed_at_index(text("closed_at IS NOT NULL"))
    op.drop_index("ix_records_chain_root", table_name="records")
    op.create_index("ix_records_provider_chain_root", "records", ["provider", "chain_root"])


def downgrade() -> None:
    """Revert this revision."""
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER records_count_delete ON records")
        op.execute(
            """CREATE TRIGGER records_count_insert_delete AFTER INSERT OR DELETE ON records
               FOR EACH ROW EXECUTE FUNCTION records_count()"""
        )
    else:
        op.execute(SQLITE_INSERT_TRIGGER)
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
