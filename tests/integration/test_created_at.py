"""A later record with an earlier `created_at` tightens an open deadline, never loosens one, and
leaves closed and leased records alone (issue 13, item 7); on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from retention.core.record_input import NewRecord
from retention.ledger import queries
from retention.ledger.db import make_engine, upgrade
from retention.services.policy_sync import sync_policies
from retention.services.recording import enrol
from tests.helpers import POLICIES
from tests.integration.conftest import Env

EVENT = "response.deadline_tightened"


def _row(env: Env, response_id: str) -> Any:
    """The ledger's row of one response."""
    with env.ledger.read() as conn:
        (row,) = queries.rows_for_id(conn, response_id)
    return row


def _events(env: Env, name: str) -> list[dict[str, Any]]:
    """Audit records of one event, from the trail file."""
    import json

    path = env.settings.audit.file
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] == name]


def _enrol(env: Env, *records: NewRecord) -> Any:
    """Enrol records as given."""
    sync_policies(env.ledger, env.policies)
    return enrol(env.ledger, env.settings, env.policies, list(records))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_env(
    request: pytest.FixtureRequest,
    make_env: Callable[..., Env],
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    """An Env on SQLite, or on a fresh PostgreSQL database."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        monkeypatch.setenv("RETENTION_DATABASE_URL", url)
    return make_env()


def test_an_earlier_created_at_tightens_a_pending_deadline(backend_env: Env) -> None:
    """A wrong, late creation time is corrected by a later record: the deadline comes down to
    the true one, audited with both deadlines, and the response is deleted on time."""
    env = backend_env
    env.standin.store.create({"id": "t_late"})
    env.record("t_late", age=timedelta(minutes=1))
    first = _row(env, "t_late")
    assert first.deadline > datetime.now(UTC) + timedelta(days=29)
    assert env.sweep().total("deleted") == 0
    env.record("t_late", age=timedelta(days=40))
    row = _row(env, "t_late")
    assert row.deadline == row.created_at + timedelta(days=30) < datetime.now(UTC)
    assert row.due_at == row.deadline and row.state == "pending"
    (event,) = _events(env, EVENT)
    assert event["response_id"] == "t_late"
    assert event["details"]["previous_deadline"] == first.deadline.isoformat()[:-6] + "Z"
    assert event["details"]["created_at"] == row.created_at.isoformat()[:-6] + "Z"
    assert env.sweep().total("deleted") == 1
    assert env.deletes() == ["t_late"]


def test_a_sweep_lease_is_never_overtaken(backend_env: Env) -> None:
    """While a sweep holds a live lease on a record its deadline stays; once the lease has
    expired, the same correction applies."""
    env = backend_env
    env.record("t_leased", age=timedelta(minutes=1))
    rid = _row(env, "t_leased").id
    with env.ledger.transaction() as conn:
        queries.update_record(
            conn,
            rid,
            lease_owner="another-sweep",
            lease_until=datetime.now(UTC) + timedelta(minutes=5),
        )
    before = _row(env, "t_leased").deadline
    env.record("t_leased", age=timedelta(days=40))
    assert _row(env, "t_leased").deadline == before and not _events(env, EVENT)
    with env.ledger.transaction() as conn:
        queries.update_record(conn, rid, lease_until=datetime.now(UTC) - timedelta(seconds=1))
    env.record("t_leased", age=timedelta(days=40))
    assert _row(env, "t_leased").deadline < before and len(_events(env, EVENT)) == 1


def test_a_provider_retry_after_survives_a_tightening(backend_env: Env) -> None:
    """A provider's 429 asked for an hour (a throttled DELETE counts no attempt; its due time
    is written as the sweep writes it): a later record with an earlier creation time brings
    the deadline down but keeps the retry time, so the next sweep sends nothing. Before, the
    record was due again at once and the provider asked again."""
    env = backend_env
    env.standin.store.create({"id": "t_throttled"})
    env.record("t_throttled", age=timedelta(days=31))
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    with env.ledger.transaction() as conn:
        queries.update_record(
            conn, _row(env, "t_throttled").id, due_at=retry_at, attempts=0, last_status=429
        )
    throttled = _row(env, "t_throttled")
    env.record("t_throttled", age=timedelta(days=40))
    row = _row(env, "t_throttled")
    assert row.deadline < throttled.deadline and row.due_at == throttled.due_at
    assert len(_events(env, EVENT)) == 1
    assert env.sweep().total("deleted") == 0 and env.deletes() == []


def test_a_later_created_at_never_loosens(env: Env) -> None:
    """A later or equal creation time, given again, moves nothing and writes nothing."""
    env.record("t_a", age=timedelta(days=2))
    before = _row(env, "t_a")
    env.record("t_a", age=timedelta(minutes=1))
    env.record("t_a", age=timedelta(days=2))  # a little later than the first: still not earlier
    after = _row(env, "t_a")
    assert (after.deadline, after.created_at) == (before.deadline, before.created_at)
    assert not _events(env, EVENT)


def test_a_created_at_tightens_a_first_seen_deadline(env: Env) -> None:
    """An ID first recorded without a creation time counts from when it was seen; a record
    that gives one ten days back brings the deadline ten days closer."""
    result = _enrol(env, NewRecord(response_id="t_seen"))
    seen = _row(env, "t_seen")
    assert (result.accepted, seen.deadline_basis) == (1, "first_seen")
    result = _enrol(
        env, NewRecord(response_id="t_seen", created_at=datetime.now(UTC) - timedelta(days=10))
    )
    row = _row(env, "t_seen")
    assert (result.duplicates, result.tightened, row.deadline_basis) == (1, 1, "created_at")
    assert timedelta(days=9) < seen.deadline - row.deadline < timedelta(days=11)
    (event,) = _events(env, EVENT)
    assert event["details"]["previous_deadline_basis"] == "first_seen"
    assert event["details"]["previous_created_at"] is None


def test_closed_records_are_not_moved(env: Env) -> None:
    """A deleted (or absent) record keeps its deadline and gets no event."""
    env.record("t_gone", age=timedelta(days=40))
    assert env.sweep().total("absent") == 1
    before = _row(env, "t_gone")
    env.record("t_gone", age=timedelta(days=400))
    after = _row(env, "t_gone")
    assert (after.state, after.deadline) == ("absent", before.deadline)
    assert not _events(env, EVENT)


def test_a_held_record_is_tightened_and_stays_held(env: Env) -> None:
    """A held record's deadline is corrected, but it stays held and is never due."""
    env.record("resp_held", age=timedelta(minutes=1))
    env.record("resp_held", age=timedelta(days=40))
    row = _row(env, "resp_held")
    assert (row.state, row.hold, row.due_at) == ("held", "case-2026-113", None)
    assert row.deadline < datetime.now(UTC)
    assert len(_events(env, EVENT)) == 1
    assert env.sweep().total("deleted") + env.sweep().total("absent") == 0


def test_a_repeat_within_one_import_tightens(env: Env) -> None:
    """The same ID twice in one batch: the earlier creation time wins."""
    now = datetime.now(UTC)
    result = _enrol(
        env,
        NewRecord(response_id="t_twice", created_at=now - timedelta(minutes=1)),
        NewRecord(response_id="t_twice", created_at=now - timedelta(days=5)),
    )
    assert (result.accepted, result.duplicates, result.tightened) == (1, 1, 1)
    assert _row(env, "t_twice").created_at == now - timedelta(days=5)


def test_a_kept_chain_comes_down_with_its_newest_turn(make_env: Callable[..., Env]) -> None:
    """Under keep_chains_intact every turn lives as long as the newest; when the newest turn's
    creation time is corrected, the whole chain's deadline comes down with it."""
    env = make_env(
        policies=POLICIES.replace("  ttl: 30d\n", "  ttl: 30d\n  keep_chains_intact: true\n", 1)
    )
    now = datetime.now(UTC)
    _enrol(
        env,
        NewRecord(response_id="c_first", created_at=now - timedelta(days=40)),
        NewRecord(
            response_id="c_next",
            created_at=now - timedelta(minutes=1),
            previous_response_id="c_first",
        ),
    )
    assert _row(env, "c_first").deadline == _row(env, "c_next").deadline > now
    changed = len(_events(env, "response.deadline_changed"))
    result = _enrol(env, NewRecord(response_id="c_next", created_at=now - timedelta(days=35)))
    assert result.tightened == 1
    first, nxt = _row(env, "c_first"), _row(env, "c_next")
    assert first.deadline == nxt.deadline == now - timedelta(days=5)
    assert len(_events(env, EVENT)) == 1
    (moved,) = _events(env, "response.deadline_changed")[changed:]
    assert moved["response_id"] == "c_first"
