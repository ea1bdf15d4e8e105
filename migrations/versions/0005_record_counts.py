"""Keep record counts per provider and state in a table maintained by triggers.

`status` and `/metrics` then read a handful of rows instead of scanning the ledger, whatever its
size. The triggers fire on every insert, state change and delete, in the same transaction, so the
counts are exact.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BUMP = """INSERT INTO record_counts (provider, state, n) VALUES ({p}, {s}, {d})
ON CONFLICT (provider, state) DO UPDATE SET n = record_counts.n + {d}"""

SQLITE = [
    f"""CREATE TRIGGER records_count_insert AFTER INSERT ON records BEGIN
        {BUMP.format(p="NEW.provider", s="NEW.state", d=1)}; END""",
    f"""CREATE TRIGGER records_count_update AFTER UPDATE OF state, provider ON records
        WHEN OLD.state != NEW.state OR OLD.provider != NEW.provider BEGIN
        {BUMP.format(p="OLD.provider", s="OLD.state", d=-1)};
        {BUMP.format(p="NEW.provider", s="NEW.state", d=1)}; END""",
    f"""CREATE TRIGGER records_count_delete AFTER DELETE ON records BEGIN
        {BUMP.format(p="OLD.provider", s="OLD.state", d=-1)}; END""",
]
POSTGRES = [
    f"""CREATE FUNCTION records_count() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP IN ('UPDATE', 'DELETE') THEN
        {BUMP.format(p="OLD.provider", s="OLD.state", d=-1)};
      END IF;
      IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {BUMP.format(p="NEW.provider", s="NEW.state", d=1)};
      END IF;
      RETURN NULL;
    END $$""",
    """CREATE TRIGGER records_count_insert_delete AFTER INSERT OR DELETE ON records
       FOR EACH ROW EXECUTE FUNCTION records_count()""",
    """CREATE TRIGGER records_count_update AFTER UPDATE OF state, provider ON records
       FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                          OR OLD.provider IS DISTINCT FROM NEW.provider)
       EXECUTE FUNCTION records_count()""",
]


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "record_counts",
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "state", name=op.f("pk_record_counts")),
    )
    op.execute(
        "INSERT INTO record_counts (provider, state, n) "
        "SELECT provider, state, count(*) FROM records GROUP BY provider, state"
    )
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    """Revert this revision."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER records_count_insert_delete ON records")
        op.execute("DROP TRIGGER records_count_update ON records")
        op.execute("DROP FUNCTION records_count()")
    else:
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER records_count_{name}")
    op.drop_table("record_counts")
