"""A requeued turn of a conversation kept intact takes its chain's deadline, never its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from retention.services.requeue import Selection, requeue

CHAINS = "version: 1\ndefault: {ttl: 1h, keep_chains_intact: true}\n"


def _states(env: Any) -> dict[str, str]:
    """Each record's state."""
    with env.ledger.read() as conn:
        return dict(conn.execute(text("SELECT response_id, state FROM records")).all())


def test_a_requeued_turn_waits_for_its_chain(make_env: Any) -> None:
    """A turn that failed before its conversation went on is not deleted early once requeued:
    the newest turn's deadline holds it, and the move is audited."""
    env = make_env(policies=CHAINS)
    for rid in ("t1", "t2"):
        env.standin.store.create({"id": rid})
    env.record("t1", age=timedelta(hours=2))  # its own deadline passed an hour ago
    failed_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
    with env.ledger.transaction() as conn:  # it failed (say 8 x 5xx) before the next turn came
        conn.execute(
            text(
                "UPDATE records SET state = 'failed', due_at = NULL, closed_at = :t, "
                "attempts = 8 WHERE response_id = 't1'"
            ),
            {"t": failed_at},
        )
    env.record("t2", age=timedelta(0), previous_response_id="t1")
    requeue(env.ledger, env.policies, Selection(ids=("t1",)), reason="incident fixed")
    env.sweep()
    assert _states(env) == {"t1": "pending", "t2": "pending"}
    with env.ledger.read() as conn:
        events = conn.execute(
            text("SELECT event FROM audit_events WHERE response_id = 't1' ORDER BY seq")
        ).scalars()
        assert "response.deadline_changed" in list(events)
