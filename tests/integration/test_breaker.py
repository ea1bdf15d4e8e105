"""Probes and the circuit breaker around real sweeps against the stand-in on loopback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from retention.sweep.hooks import Hooks
from retention.sweep.probing import recent_ids
from tests.integration.conftest import Env


def _rows(env: Env) -> dict[str, tuple[str, int]]:
    """response_id -> (state, attempts)."""
    with env.ledger.read() as conn:
        rows = conn.execute(text("SELECT response_id, state, attempts FROM records")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def _events(env: Env, name: str) -> list[str]:
    """The audit lines of one event."""
    with env.ledger.read() as conn:
        return list(
            conn.execute(
                text("SELECT line FROM audit_events WHERE event = :e ORDER BY seq"), {"e": name}
            ).scalars()
        )


def test_outage_mid_sweep_pauses_the_provider_and_charges_nobody(env: Env) -> None:
    """Every connection drops after 20 answers: the breaker pauses the provider, no ID is
    failed or charged, and once the provider is back later sweeps delete them all."""
    ids = [f"b{i}" for i in range(120)]
    for rid in ids:
        env.standin.store.create({"id": rid})
    env.record(*ids)
    answers: list[int | None] = []

    def count(provider: str, status: int | None) -> None:
        """Cut every connection after the 20th answer."""
        answers.append(status)
        if len(answers) == 20:
            env.standin.knobs.update({"drop_rate": 1.0})

    report = env.sweep(hooks=Hooks(request=count))
    assert report.faults["fireworks"]["event"] == "provider.unreachable"
    assert report.exit_code == 1 and report.total("failed") == 0
    rows = _rows(env)
    assert {s for s, _ in rows.values()} == {"deleted", "pending"}
    assert {a for s, a in rows.values() if s == "pending"} == {0}, "no attempt charged"
    assert '"check":"breaker"' in _events(env, "provider.unreachable")[0]
    assert None in answers[20:28], "the outage was seen"

    env.standin.knobs.update({"drop_rate": 0.0})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(s != "deleted" for s, _ in _rows(env).values()):
        env.sweep()
        time.sleep(0.2)
    assert set(_rows(env).values()) == {("deleted", 1)}


def test_probe_during_an_outage_sends_no_delete(env: Env) -> None:
    """A provider that drops every connection fails its probe: no DELETE, nothing charged."""
    env.record(*(f"o{i}" for i in range(10)))
    env.standin.knobs.update({"drop_rate": 1.0})
    report = env.sweep()
    assert report.faults["fireworks"]["event"] == "provider.unreachable"
    assert env.deletes() == [] and set(_rows(env).values()) == {("pending", 0)}
    assert '"stage":"probe"' in _events(env, "provider.unreachable")[0]


def test_recent_ids_are_pending_young_and_newest_first(env: Env) -> None:
    """The probe looks up at most 3 pending IDs, newest recorded first, none past the storage
    period (the provider may have expired those itself)."""
    env.record("old1", "old2", age=timedelta(days=45))
    env.record("y1", "y2", "y3", "y4", age=timedelta(days=2))
    env.record("fresh", age=timedelta(hours=1))
    with env.ledger.engine.begin() as conn:
        conn.execute(
            text("UPDATE records SET state = 'deleted', due_at = NULL WHERE response_id = 'y4'")
        )
    provider = env.settings.providers["fireworks"]
    assert recent_ids(env.ledger, provider, datetime.now(UTC)) == ["fresh", "y3", "y2"]
    env.record("late", age=timedelta(days=40))
    assert recent_ids(env.ledger, provider, datetime.now(UTC))[0] == "fresh"


def test_a_key_that_sees_nothing_stops_before_any_delete(env: Env) -> None:
    """The stand-in's blind key is accepted but sees no response: misconfigured, none absent."""
    env.standin.blind_key = "test-key"
    env.standin.api_key = "the-real-key"
    env.record("v1", "v2", age=timedelta(days=3), metadata={"data_class": "pii"})  # due: 24h
    report = env.sweep()
    assert report.faults["fireworks"]["event"] == "provider.misconfigured"
    assert "cannot see the recorded responses" in report.faults["fireworks"]["reason"]
    assert env.deletes() == [] and set(_rows(env).values()) == {("pending", 0)}
