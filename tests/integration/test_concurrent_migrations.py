"""Migrations started together on one PostgreSQL ledger (the Job and a pod, or two pods of
deploy/kubernetes/postgres) take turns: none fails, the schema ends at the head."""

from __future__ import annotations

import threading

import pytest

from retention.ledger.db import HEAD_REVISION, current_revision, make_engine, upgrade

pytestmark = pytest.mark.postgres


def test_three_migrations_at_once_on_an_empty_ledger(pg_url: str) -> None:
    """Three upgrades, each on its own connection, started at once on an empty database: all
    succeed (the second and third wait for the advisory lock, then find nothing to do)."""
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def migrate() -> None:
        engine = make_engine(pg_url)
        try:
            start.wait()
            upgrade(engine)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = make_engine(pg_url)
    try:
        assert current_revision(engine) == HEAD_REVISION
    finally:
        engine.dispose()
