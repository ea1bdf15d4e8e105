"""Sweeps against the stand-in over real sockets: outcomes, retries, stops and safety."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text

from retention.ledger import queries
from retention.standin.stored import Seen
from retention.sweep.hooks import Hooks
from tests.helpers import auditor_verify
from tests.integration.conftest import Env


def _states(env: Env) -> dict[str, str]:
    """response_id -> state."""
    with env.ledger.read() as conn:
        return {r[0]: r[1] for r in conn.execute(text("SELECT response_id, state FROM records"))}


def _events(env: Env, name: str) -> list[str]:
    """Response IDs of one event kind, in chain order."""
    with env.ledger.read() as conn:
        return list(
            conn.execute(
                text("SELECT response_id FROM audit_events WHERE event = :e ORDER BY seq"),
                {"e": name},
            ).scalars()
        )


def _after_probe(env: Env, **knobs: float) -> Hooks:
    """Hooks that turn the stand-in's knobs once the sweep's probe passed (a provider failing
    the probe is never sent a DELETE)."""
    return Hooks(probe=lambda result: env.standin.knobs.update(knobs))


def _serving(handler):  # type: ignore[no-untyped-def]
    """A MockTransport handler that answers the probe (a listing, or the models) as the API
    does."""

    def serve(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith(("/responses", "/models")):
            return httpx.Response(200, json={"object": "list", "data": []})
        return handler(request)  # type: ignore[no-any-return]

    return serve


def test_due_records_are_deleted_and_fresh_ones_kept(env: Env) -> None:
    """Only what is past its deadline is sent; 404 is absent, not an error."""
    env.standin.store.create({"id": "old"})
    env.standin.store.create({"id": "young"})  # the probe looks it up
    env.record("old", "gone")
    env.record("young", age=timedelta(days=1))
    report = env.sweep()
    assert (report.total("deleted"), report.total("absent"), report.exit_code) == (1, 1, 0)
    assert sorted(env.deletes()) == ["gone", "old"]
    assert _states(env) == {"old": "deleted", "gone": "absent", "young": "pending"}


def test_a_200_that_says_not_deleted_is_never_recorded_deleted(env: Env) -> None:
    """A provider answering 200 `{"deleted": false}` keeps the response: nothing is recorded
    deleted; each ID fails with the provider's words, and the stand-in still holds it."""
    for i in range(4):
        env.standin.store.create({"id": f"kept{i}"})
    env.record(*(f"kept{i}" for i in range(4)))
    report = env.sweep(hooks=_after_probe(env, keep_on_delete_rate=1.0))
    assert (report.total("deleted"), report.total("failed")) == (0, 4)
    assert set(_states(env).values()) == {"failed"}
    assert not _events(env, "response.deleted")
    with env.ledger.read() as conn:
        errors = conn.execute(text("SELECT last_error FROM records")).scalars().all()
    assert all("but not deleted" in (error or "") for error in errors)
    assert all(f"kept{i}" in env.standin.store.responses for i in range(4))


def test_429_is_retried_honouring_retry_after(env: Env) -> None:
    """Every 429 is retried after at least its Retry-After, and the ID ends deleted."""
    for i in range(6):
        env.standin.store.create({"id": f"r{i}"})
    env.record(*(f"r{i}" for i in range(6)))
    env.standin.knobs.update({"rate_429": 0.5, "retry_after": 1})
    started = datetime.now(UTC)
    report = env.sweep()
    assert report.total("deleted") == 6 and report.exit_code == 0
    if report.total("retry"):
        assert datetime.now(UTC) - started >= timedelta(seconds=1)
    assert len(_events(env, "response.delete_attempt_failed")) == report.total("retry")


def test_unauthorised_provider_stops_with_nothing_marked(make_env) -> None:  # type: ignore[no-untyped-def]
    """401 stops that provider's sweep: no record changes state, the sweep exits 1."""
    env = make_env()
    env.standin.api_key = "another-key"
    env.record(*(f"a{i}" for i in range(30)))
    report = env.sweep()
    assert report.exit_code == 1 and report.auth_failed == ["fireworks"]
    assert set(_states(env).values()) == {"pending"}
    assert len(env.deletes()) <= 8 + 1, "stops after the requests already in flight"
    assert _events(env, "provider.auth_failed") == [None]
    with env.ledger.read() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM records WHERE lease_owner IS NOT NULL")
            ).scalar()
            == 0
        )


def test_other_4xx_fails_the_id_with_the_reason(env: Env) -> None:
    """A 400 is a permanent failure recorded with its status and error."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad id"})

    env.record("f1")
    report = env.sweep(transport=httpx.MockTransport(_serving(handler)))
    assert report.total("failed") == 1 and report.exit_code == 1
    with env.ledger.read() as conn:
        row = queries.rows_for_id(conn, "f1")[0]
    assert (row.state, row.last_status) == ("failed", 400) and "bad id" in row.last_error


def test_max_attempts_then_failed(make_env) -> None:  # type: ignore[no-untyped-def]
    """A response that keeps failing with 500 is `failed` after max_attempts tries."""
    env = make_env(extra="sweep:\n  max_attempts: 3\n")
    env.record("m1")
    report = env.sweep(hooks=_after_probe(env, error_rate=1.0))
    assert report.total("failed") == 1
    assert env.deletes() == ["m1"] * 3
    assert _events(env, "response.failed") == ["m1"]


def test_429s_do_not_count_towards_max_attempts(make_env) -> None:  # type: ignore[no-untyped-def]
    """A 429 storm never makes an ID `failed`: it waits for a later sweep, then goes."""
    env = make_env(extra="sweep:\n  max_attempts: 3\n")
    env.record("t1")
    report = env.sweep(hooks=_after_probe(env, rate_429=1.0, retry_after=0))
    assert report.total("failed") == 0 and report.total("deferred") == 1
    with env.ledger.read() as conn:
        row = queries.rows_for_id(conn, "t1")[0]
    assert (row.state, row.attempts, row.last_status) == ("pending", 0, 429)
    assert env.deletes() == ["t1"] * 3, "in-sweep retries stop after max_attempts throttles"
    env.standin.knobs.update({"rate_429": 0.0})
    time.sleep(0.3)  # past the jittered Retry-After: 0 s
    assert env.sweep().total("absent") == 1


def test_long_retry_waits_are_deferred_to_the_next_sweep(env: Env) -> None:
    """A Retry-After beyond the in-sweep wait leaves the ID pending with a later due time."""
    env.record("d1")
    report = env.sweep(hooks=_after_probe(env, rate_429=1.0, retry_after=120))
    assert report.total("deferred") == 1 and report.exit_code == 1
    with env.ledger.read() as conn:
        row = queries.rows_for_id(conn, "d1")[0]
    assert row.state == "pending" and row.due_at >= datetime.now(UTC) + timedelta(seconds=100)
    env.standin.knobs.update({"rate_429": 0.0})
    assert env.sweep().total("deleted") == 0, "not due again before Retry-After passed"


def test_limit_caps_the_requests(env: Env) -> None:
    """`--limit` bounds the DELETE requests of one sweep; the rest stay pending."""
    env.record(*(f"l{i}" for i in range(20)))
    report = env.sweep(limit=5)
    assert len(env.deletes()) == 5 and report.total("absent") == 5


def test_verify_after_delete_sends_a_get(make_env) -> None:  # type: ignore[no-untyped-def]
    """With verify_after_delete, a deletion counts only once a GET answers 404."""
    env = make_env(provider_extra="    verify_after_delete: true\n")
    env.standin.store.create({"id": "v1"})
    env.record("v1")
    assert env.sweep().total("deleted") == 1
    probes = ("/v1/responses", "/v1/models")  # under the flavour's own path
    methods = [s.method for s in env.standin.store.seen if not s.path.endswith(probes)]
    assert methods == ["DELETE", "GET"], "the probe aside"


def test_never_deletes_early_even_if_the_ledger_says_due(env: Env) -> None:
    """The executor re-checks policies: a record wrongly marked due is not sent."""
    env.standin.store.create({"id": "early"})  # the probe looks it up
    env.record("early", age=timedelta(hours=1))
    with env.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE records SET due_at = '2000-01-01 00:00:00'"))
    report = env.sweep()
    assert env.deletes() == [] and report.total("skipped") == 1


def test_sweep_trail_verifies(env: Env) -> None:
    """After a sweep with retries and outcomes, the audit file passes the auditor's recipe."""
    env.standin.knobs.update({"rate_429": 0.3, "retry_after": 0})
    env.record(*(f"t{i}" for i in range(40)))
    env.sweep()
    assert auditor_verify(env.settings.audit.file) > 80
    assert len(_events(env, "response.absent")) == 40


def test_dropped_connections_are_retried(env: Env) -> None:
    """A connection closed without an answer is retried to completion and charges no attempt
    (the provider's fault, not the ID's)."""
    env.record(*(f"x{i}" for i in range(20)))
    report = env.sweep(hooks=_after_probe(env, drop_rate=0.2))
    assert report.total("absent") == 20
    assert isinstance(env.standin.store.seen[0], Seen)
    with env.ledger.read() as conn:
        attempts = set(conn.execute(text("SELECT attempts FROM records")).scalars())
    assert attempts == {1}, "only the answered DELETE counts"
