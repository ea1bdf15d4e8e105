"""Holds placed while other processes apply policies, place holds or record IDs: the policies
lock (ledger/locks.py) runs them one after the other on PostgreSQL, as BEGIN IMMEDIATE does on
SQLite, so none acts on holds another is changing. Each test stalls one transaction at a known
step (a row lock held by a test connection, or an enrolment's end-of-stream verdict) and shows
the other waits for it, then finds the ledger as it left it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text

from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.vocabulary import MetaKey
from retention.errors import ConflictError
from retention.ledger import queries
from retention.services.holds import checked_hold, place_hold
from retention.services.policies_in_force import policies_in_force
from retention.services.policy_sync import sync_policies
from retention.services.recording import enrol
from tests.helpers import POLICIES
from tests.integration.conftest import Env, on_postgres

WAIT_S = 5.0  # the longest a step may take to show up (it takes milliseconds)
# lock requests waiting in this test's database (the server may be running other tests)
WAITING = """
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND l.locktype = ANY(:k) AND a.datname = current_database()
"""


class Background(threading.Thread):
    """A call run in a thread, its result or error kept for the test."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.result: Any = None
        self.error: Exception | None = None
        self.start()

    def run(self) -> None:
        """Run the call."""
        try:
            self.result = self.call()
        except Exception as exc:
            self.error = exc

    def outcome(self) -> Any:
        """The call's result once it ended (its error raised)."""
        self.join(WAIT_S)
        assert not self.is_alive(), "the call never ended"
        if self.error is not None:
            raise self.error
        return self.result


@contextmanager
def row_locked(pg_url: str, sql: str) -> Iterator[Connection]:
    """Hold the row locks of `sql` (a SELECT ... FOR UPDATE) until the block ends."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(text(sql))
            yield conn
    finally:
        engine.dispose()


def waiting(pg_url: str, kinds: tuple[str, ...], count: int = 1) -> bool:
    """Whether `count` lock requests of these kinds (`advisory`, `transactionid`, `tuple`)
    are waiting, within WAIT_S."""
    engine = create_engine(pg_url)
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(text(WAITING), {"k": list(kinds)}).scalar_one()
            if found >= count:
                return True
            time.sleep(0.02)
        return False
    finally:
        engine.dispose()


def hold(env: Env, policies: PolicySet, name: str, ids: list[str]) -> dict[str, Any]:
    """Place hold `name` on `ids` with `policies` as the placing process read them."""
    request = checked_hold(
        env.settings, ids=ids, reason="order 7", name=name, now=datetime.now(UTC)
    )
    return place_hold(env.ledger, policies, request, actor="cli:tester")


def record_of(env: Env, rid: str) -> tuple[str, str | None]:
    """One record's state and hold."""
    with env.ledger.read() as conn:
        row = conn.execute(
            text("SELECT state, hold FROM records WHERE response_id = :r"), {"r": rid}
        ).one()
    return row.state, row.hold


def events_of(env: Env, rid: str) -> list[str]:
    """The audit file's events of one response ID, in order."""
    assert env.settings.audit.file is not None
    lines = env.settings.audit.file.read_text().splitlines()
    return [r["event"] for r in map(json.loads, lines) if r.get("response_id") == rid]


def in_step(env: Env) -> bool:
    """Whether the ledger's digest is that of the file and the ledger's active holds."""
    with env.ledger.read() as conn:
        applied = queries.get_meta(conn, MetaKey.POLICY_DIGEST)
    return applied == policies_in_force(env.settings, ledger=env.ledger).digest()


@pytest.mark.postgres
def test_a_sync_under_way_is_waited_for_and_never_undoes_or_reopens(
    pg_url: str, make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold placed while another process applies a changed file waits for it, then is
    refused (its policies are no longer the ledger's) and placed once re-read, never undone
    with a false `response.released`; a record a sweep closed meanwhile stays closed."""
    env = on_postgres(pg_url, make_env, monkeypatch)
    env.record("r0", "r1", "r2")
    before = policies_in_force(env.settings, ledger=env.ledger)
    env.settings.policies_file.write_text(POLICIES.replace("ttl: 30d", "ttl: 40d"))
    changed = policies_in_force(env.settings, ledger=env.ledger)
    with row_locked(pg_url, "SELECT * FROM records WHERE response_id = 'r0' FOR UPDATE"):
        sync = Background(lambda: sync_policies(env.ledger, changed))
        assert waiting(pg_url, ("transactionid", "tuple")), "the sync reached r0"
        placing = Background(lambda: hold(env, before, "h9", ["r1"]))
        assert waiting(pg_url, ("advisory",)), "the hold waits for the sync"
        with env.ledger.transaction() as conn:  # a sweep closes r2 meanwhile
            conn.execute(
                text("UPDATE records SET state = 'deleted', due_at = NULL WHERE response_id = 'r2'")
            )
    assert sync.outcome() is not None and sync.outcome()["changed"] == 2
    with pytest.raises(ConflictError, match="apply the file first"):
        placing.outcome()
    assert record_of(env, "r1") == ("pending", None) and record_of(env, "r2") == ("deleted", None)
    assert hold(env, changed, "h9", ["r1"])["held"] == 1
    assert record_of(env, "r1") == ("held", "h9") and in_step(env)
    assert events_of(env, "r1") == ["response.recorded", "response.held"]


@pytest.mark.postgres
def test_two_holds_placed_at_once_both_count_in_the_digest(
    pg_url: str, make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two holds placed at the same moment by two processes: the second waits for the first
    and the ledger's digest names both (every daemon stays in step)."""
    env = on_postgres(pg_url, make_env, monkeypatch)
    env.record("a1", "a2")
    policies = policies_in_force(env.settings, ledger=env.ledger)
    locked = "SELECT * FROM meta WHERE key = 'policy_digest' FOR UPDATE"
    with row_locked(pg_url, locked):  # the first to write the digest stalls there
        first = Background(lambda: hold(env, policies, "h1", ["a1"]))
        second = Background(lambda: hold(env, policies, "h2", ["a2"]))
        assert waiting(pg_url, ("advisory", "transactionid", "tuple"), count=2)
    assert first.outcome()["held"] == 1 and second.outcome()["held"] == 1
    assert record_of(env, "a1") == ("held", "h1") and record_of(env, "a2") == ("held", "h2")
    assert in_step(env)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_id_recorded_while_its_hold_is_placed_comes_in_held(
    backend: str, request: pytest.FixtureRequest, make_env: Callable[..., Env]
) -> None:
    """An ingest that read the holds before a hold naming its ID was placed: the hold waits
    for the ingest to commit, then finds the ID and holds it (never `not_recorded`)."""
    if backend == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        env = on_postgres(pg_url, make_env, request.getfixturevalue("monkeypatch"))
    else:
        env = make_env()
    env.record("old")
    policies = policies_in_force(env.settings, ledger=env.ledger)
    inserted, go_on = threading.Event(), threading.Event()

    def verdict() -> None:
        """Stall the ingest's transaction after its rows are written."""
        inserted.set()
        go_on.wait(WAIT_S)

    created = datetime.now(UTC) - timedelta(days=1)
    new = [NewRecord("new1", created_at=created)]
    ingest = Background(lambda: enrol(env.ledger, env.settings, policies, new, verdict=verdict))
    assert inserted.wait(WAIT_S)
    placing = Background(lambda: hold(env, policies, "h3", ["new1"]))
    if backend == "postgres":
        assert waiting(request.getfixturevalue("pg_url"), ("advisory",)), "the hold waits"
    else:
        time.sleep(0.2)  # SQLite: the hold's BEGIN IMMEDIATE waits for the ingest's commit
    assert placing.is_alive(), "the hold waits for the ingest"
    go_on.set()
    assert ingest.outcome().accepted == 1
    placed = placing.outcome()
    assert (placed["held"], placed["not_recorded"]) == (1, 0)
    assert record_of(env, "new1") == ("held", "h3")
    assert events_of(env, "new1") == ["response.recorded", "response.held"]
