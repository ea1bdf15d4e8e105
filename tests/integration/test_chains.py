"""keep_chains_intact: a conversation lives as long as its newest turn."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import text

from tests.integration.conftest import Env

CHAINS = "version: 1\ndefault: {ttl: 3s, keep_chains_intact: true}\n"


def _states(env: Env) -> dict[str, str]:
    """response_id -> state."""
    with env.ledger.read() as conn:
        return dict(conn.execute(text("SELECT response_id, state FROM records")).all())


def test_expired_first_turn_waits_for_the_last_turn(make_env) -> None:  # type: ignore[no-untyped-def]
    """The first turn is past its TTL but its chain has a fresh turn: kept until that expires."""
    env = make_env(policies=CHAINS)
    for rid in ("t1", "t2", "t3"):
        env.standin.store.create({"id": rid})
    env.record("t1", age=timedelta(seconds=60))
    env.record("t2", age=timedelta(seconds=30), previous_response_id="t1")
    env.record("t3", age=timedelta(seconds=0), previous_response_id="t2")
    assert env.sweep().total("deleted") == 0
    assert set(_states(env).values()) == {"pending"}
    time.sleep(3.2)
    assert env.sweep().total("deleted") == 3


def test_turn_arriving_before_its_parent_joins_the_chain(make_env) -> None:  # type: ignore[no-untyped-def]
    """A child recorded first is re-rooted when its parent (and grandparent) arrive."""
    env = make_env(policies=CHAINS)
    env.record("c3", age=timedelta(seconds=0), previous_response_id="c2")
    env.record("c1", age=timedelta(seconds=60))
    env.record("c2", age=timedelta(seconds=30), previous_response_id="c1")
    with env.ledger.read() as conn:
        roots = set(conn.execute(text("SELECT chain_root FROM records")).scalars())
        deadlines = set(conn.execute(text("SELECT deadline FROM records")).scalars())
    assert roots == {"c1"} and len(deadlines) == 1


def test_without_the_option_each_turn_keeps_its_own_deadline(env: Env) -> None:
    """Chains change nothing unless a policy asks for it."""
    env.record("o1", age=timedelta(days=40))
    env.record("o2", age=timedelta(days=1), previous_response_id="o1")
    env.standin.store.create({"id": "o2"})  # the sweep's probe looks up recent pending IDs
    assert env.sweep().total("absent") == 1
    assert _states(env) == {"o1": "absent", "o2": "pending"}


def test_first_turn_arriving_after_its_child_gets_the_chain_life(make_env) -> None:  # type: ignore[no-untyped-def]
    """A parent recorded after its child (discovery reads newest first) is kept with it."""
    env = make_env(policies=CHAINS)
    env.record("kid", age=timedelta(seconds=0), previous_response_id="mom")
    env.record("mom", age=timedelta(seconds=60))
    assert env.sweep().total("absent") + env.sweep().total("deleted") == 0
    assert set(_states(env).values()) == {"pending"}


def test_a_whole_chain_in_one_batch_shares_one_root(make_env) -> None:  # type: ignore[no-untyped-def]
    """Turns enrolled together, in any order and with equal times, form one chain."""
    from datetime import UTC, datetime

    from retention.core.record_input import NewRecord
    from retention.services.recording import enrol

    env = make_env(policies=CHAINS)
    same = datetime.now(UTC)
    batch = [
        NewRecord(response_id="g", created_at=same, previous_response_id="c"),
        NewRecord(response_id="c", created_at=same, previous_response_id="p"),
        NewRecord(response_id="p", created_at=same),
    ]
    from retention.services.policy_sync import sync_policies

    sync_policies(env.ledger, env.policies)
    enrol(env.ledger, env.settings, env.policies, batch)
    with env.ledger.read() as conn:
        assert set(conn.execute(text("SELECT chain_root FROM records")).scalars()) == {"p"}


def test_a_parent_from_before_chains_joins_its_child(make_env) -> None:  # type: ignore[no-untyped-def]
    """A parent with no chain root (recorded before migration 0003) roots its child's chain."""
    env = make_env(policies=CHAINS)
    env.record("old", age=timedelta(seconds=60))
    with env.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE records SET chain_root = NULL"))
    env.record("new", age=timedelta(seconds=0), previous_response_id="old")
    assert env.sweep().total("absent") == 0
    assert _states(env) == {"old": "pending", "new": "pending"}


def test_cycles_in_previous_ids_do_not_hang(make_env) -> None:  # type: ignore[no-untyped-def]
    """A -> B -> A (corrupt input) is enrolled without looping."""
    env = make_env(policies=CHAINS)
    env.record("A", age=timedelta(seconds=1), previous_response_id="B")
    env.record("B", age=timedelta(seconds=1), previous_response_id="A")
    assert len(_states(env)) == 2
