"""Alembic environment: the connection comes from `retention.ledger.db`, never from an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from retention.ledger.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations on the connection retention passed in, or on `sqlalchemy.url`."""
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    """Configure and run on one connection (batch mode so SQLite can alter tables)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
