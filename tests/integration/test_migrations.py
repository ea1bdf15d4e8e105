"""Migrations on real databases: counts stay exact across 0005 -> 0006 and back."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from retention.ledger import queries
from retention.ledger.db import alembic_config, make_engine, upgrade

INSERT = """INSERT INTO records (provider, response_id, meta, state, policy, deadline,
    deadline_basis, attempts, first_seen_at, updated_at)
    VALUES ('fireworks', :rid, '{}', :state, 'default', '2026-01-01 00:00:00.000000',
    'created_at', 0, '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"""


def migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Move the schema to `revision`."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def counts_match(engine: Engine) -> dict[str, int]:
    """The kept counts per state, asserted equal to a real count."""
    with engine.connect() as conn:
        real = dict(conn.execute(text("SELECT state, count(*) FROM records GROUP BY state")).all())
        kept = queries.counts_by_state(conn)
    assert kept == real
    return kept


def check_round_trip(engine: Engine) -> None:
    """Counts stay exact for rows written before, across and after migration 0006, and after
    going back to 0005."""
    migrate(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(INSERT), [{"rid": "a", "state": "pending"}, {"rid": "b", "state": "held"}]
        )
    migrate(engine, "0006")
    assert counts_match(engine) == {"pending": 1, "held": 1}
    with engine.begin() as conn:
        conn.execute(text(INSERT), [{"rid": "c", "state": "pending"}])  # as 0006 had them
        conn.execute(text("UPDATE records SET state = 'deleted' WHERE response_id = 'a'"))
        conn.execute(text("DELETE FROM records WHERE response_id = 'b'"))
    assert counts_match(engine) == {"pending": 1, "deleted": 1}
    migrate(engine, "0005", down=True)
    with engine.begin() as conn:
        conn.execute(text(INSERT), [{"rid": "d", "state": "pending"}])
    assert counts_match(engine) == {"pending": 2, "deleted": 1}
    upgrade(engine)


def test_counts_survive_the_0006_round_trip_on_sqlite(tmp_path: Path) -> None:
    """On SQLite the counts equal a real count before, across and after migration 0006."""
    engine = make_engine(f"sqlite:///{tmp_path}/ledger.db")
    check_round_trip(engine)
    engine.dispose()


@pytest.mark.postgres
def test_counts_survive_the_0006_round_trip_on_postgres(pg_url: str) -> None:
    """On PostgreSQL the counts equal a real count before, across and after migration 0006."""
    engine = make_engine(pg_url)
    check_round_trip(engine)
    engine.dispose()
