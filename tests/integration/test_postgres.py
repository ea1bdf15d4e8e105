"""The ledger on a real PostgreSQL server: migrations, enrolment, a sweep, the chain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from retention.errors import SchemaOutdatedError
from retention.ledger.db import HEAD_REVISION, make_engine, open_engine, upgrade
from tests.helpers import auditor_verify, cli, write_config
from tests.integration.conftest import Env

pytestmark = pytest.mark.postgres


def test_postgres_needs_an_explicit_upgrade(pg_url: str) -> None:
    """A PostgreSQL ledger is never migrated behind the operator's back."""
    with pytest.raises(SchemaOutdatedError, match="retention db upgrade"):
        open_engine(pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    open_engine(pg_url).dispose()
    engine.dispose()


def test_sweep_on_postgres(
    pg_url: str, make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enrol and sweep on PostgreSQL: states, events and the audit file as on SQLite."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    env = make_env()
    env.standin.store.create({"id": "pg1"})
    env.record("pg1", "pg2")
    report = env.sweep()
    assert (report.total("deleted"), report.total("absent")) == (1, 1)
    with env.ledger.read() as conn:
        states = dict(conn.execute(text("SELECT response_id, state FROM records")).all())
    assert states == {"pg1": "deleted", "pg2": "absent"}
    assert auditor_verify(env.settings.audit.file) >= 6


def test_db_upgrade_command_on_postgres(pg_url: str, workdir: Path) -> None:
    """`retention db upgrade` migrates a PostgreSQL ledger given as a plain URL."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    result = cli("db", "upgrade", cwd=workdir, env={"RETENTION_DATABASE_URL": plain})
    assert result.returncode == 0, result.stderr
    assert f"-> {HEAD_REVISION}" in result.stdout
    assert cli("record", "p_1", cwd=workdir, env={"RETENTION_DATABASE_URL": plain}).returncode == 0
