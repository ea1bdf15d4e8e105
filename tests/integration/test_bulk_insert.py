"""Bulk inserts: many rows a statement on SQLite, every row and value as given."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, select

from retention.core.times import utcnow
from retention.ledger import bulk

METADATA = MetaData()
ROWS = Table(
    "rows",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(40)),
    Column("at", DateTime),
)


@pytest.mark.parametrize("count", [1, 499, 500, 501, 1_234])
def test_every_row_lands_across_statement_boundaries(tmp_path: Path, count: int) -> None:
    """Row counts below, at and past the 500 rows of one statement all land whole, in order,
    the repeated times and the NULLs included."""
    engine = create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    METADATA.create_all(engine)
    now = utcnow().replace(tzinfo=None)
    rows = [
        (n, None if n % 7 == 0 else f"n{n}", now + timedelta(seconds=n % 3)) for n in range(count)
    ]
    with engine.begin() as conn:
        bulk.insert_many(conn, ROWS, ("id", "name", "at"), rows)
    with engine.connect() as conn:
        stored = [tuple(row) for row in conn.execute(select(ROWS).order_by(ROWS.c.id))]
    assert stored == rows


def test_rows_a_statement_stay_under_the_parameter_limit() -> None:
    """However wide the table, one statement holds at most 500 rows and 32,766 parameters."""
    assert bulk._rows_a_statement(16) == 500
    assert bulk._rows_a_statement(100) * 100 <= 32_766
    assert bulk._rows_a_statement(40_000) == 1
