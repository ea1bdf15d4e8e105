"""Requeueing failed records on the real databases: states, kept counts and events."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text

from retention.ledger import queries
from retention.ledger.db import make_engine, upgrade
from retention.services.requeue import Selection, requeue
from tests.integration.conftest import Env


def _failed_env(make_env: Callable[..., Env]) -> Env:
    """An Env whose four IDs failed for good on a 400."""
    env = make_env()
    env.record("q1", "q2", "q3", "q4")

    def refuse(request: httpx.Request) -> httpx.Response:
        """The API answers its listing; every DELETE is refused for good."""
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": [], "has_more": False})
        return httpx.Response(400, json={"error": {"message": "bad id"}})

    assert env.sweep(transport=httpx.MockTransport(refuse)).total("failed") == 4
    return env


def _check_requeue(env: Env) -> None:
    """Requeue two by name, then the rest: states, counts and one event per ID agree."""
    done = requeue(env.ledger, env.policies, Selection(ids=("q1", "q2")), reason="INC-9")
    assert sorted(i["response_id"] for i in done) == ["q1", "q2"]
    with env.ledger.read() as conn:
        assert queries.counts_by_state(conn) == {"pending": 2, "failed": 2}
        row = queries.rows_for_id(conn, "q1")[0]
        assert (row.state, row.attempts, row.closed_at, row.last_error) == (
            "pending",
            0,
            None,
            None,
        )
        assert row.due_at is not None and row.due_at >= row.deadline
        assert queries.count_due(conn, row.due_at) == 2
    rest = requeue(env.ledger, env.policies, Selection(provider="fireworks"), reason="INC-9")
    assert sorted(i["response_id"] for i in rest) == ["q3", "q4"]
    assert requeue(env.ledger, env.policies, Selection(), reason="INC-9") == []
    with env.ledger.read() as conn:
        assert queries.counts_by_state(conn) == {"pending": 4}
        events = conn.execute(
            text("SELECT response_id FROM audit_events WHERE event = 'response.requeued'")
        ).scalars()
        assert sorted(events) == ["q1", "q2", "q3", "q4"]
    assert env.sweep().total("absent") == 4


def test_requeue_on_sqlite(make_env: Callable[..., Env]) -> None:
    """On SQLite the count triggers move each requeued record from failed to pending."""
    _check_requeue(_failed_env(make_env))


@pytest.mark.postgres
def test_requeue_on_postgres(
    pg_url: str, make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the same: states, counts, events, and the next sweep closes them."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", pg_url)
    engine = make_engine(pg_url)
    upgrade(engine)
    engine.dispose()
    _check_requeue(_failed_env(make_env))
