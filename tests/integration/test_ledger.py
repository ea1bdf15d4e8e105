"""The ledger on a real SQLite file: enrolment, events with state, chain and audit file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from retention.audit.verifier import Anchors, verify_records
from retention.ledger import queries
from retention.ledger.db import HEAD_REVISION, head_revision
from retention.ledger.models import Base
from tests.helpers import auditor_verify
from tests.integration.conftest import Env


def test_recording_twice_changes_nothing(env: Env) -> None:
    """A second record of the same ID writes no row and no event."""
    env.record("resp_a")
    with env.ledger.read() as conn:
        before = conn.execute(text("SELECT count(*) FROM audit_events")).scalar()
        row = queries.rows_for_id(conn, "resp_a")[0]
    env.record("resp_a", age=timedelta(days=1))
    with env.ledger.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == before
        assert queries.rows_for_id(conn, "resp_a")[0] == row


def test_each_record_has_its_event_in_the_same_commit(env: Env) -> None:
    """Every recorded ID has exactly one response.recorded event."""
    env.record("a1", "a2", "a3")
    with env.ledger.read() as conn:
        events = conn.execute(
            text("SELECT response_id FROM audit_events WHERE event = 'response.recorded'")
        ).scalars()
        assert sorted(events) == ["a1", "a2", "a3"]


def test_failed_transaction_leaves_neither_state_nor_event(env: Env) -> None:
    """When a write fails midway, no row and no audit event of it remain."""
    try:
        with env.ledger.write() as tx:
            tx.event("response.recorded", response_id="ghost")
            tx.conn.execute(text("INSERT INTO no_such_table VALUES (1)"))
    except Exception:  # noqa: S110 - the failure is the point
        pass
    with env.ledger.read() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM audit_events WHERE response_id = 'ghost'")
            ).scalar()
            == 0
        )
    env.record("after")
    assert auditor_verify(env.settings.audit.file) >= 2


def test_chain_continues_across_ledger_instances(make_env) -> None:  # type: ignore[no-untyped-def]
    """Two processes' worth of writers extend one sound chain in the file and the database."""
    first = make_env()
    first.record("x1")
    second = make_env()
    second.record("x2")
    with second.ledger.read() as conn:
        lines = conn.execute(text("SELECT line FROM audit_events ORDER BY seq")).scalars()
        fault = verify_records((json.loads(line) for line in lines), Anchors()).fault
    assert fault is None
    assert auditor_verify(second.settings.audit.file) == 3  # policy.loaded, x1, x2


def test_audit_file_is_backfilled_after_a_loss(env: Env) -> None:
    """Lines the file lost (a crash between commit and append) are rewritten in order."""
    env.record("b1", "b2")
    audit = env.settings.audit.file
    lines = audit.read_text().splitlines()
    audit.write_text("\n".join(lines[:1]) + "\n")
    env.record("b3")
    assert auditor_verify(audit) == len(lines) + 1


def test_migrations_match_the_models(env: Env) -> None:
    """`alembic check`: the models and the migrations describe the same schema."""
    from alembic import command

    from retention.ledger.db import alembic_config

    command.check(alembic_config(env.ledger.engine))
    assert head_revision(env.ledger.engine) == HEAD_REVISION
    assert set(Base.metadata.tables) <= set(
        env.ledger.engine.dialect.get_table_names(env.ledger.engine.connect())
    )


def test_due_query_uses_the_partial_index(env: Env) -> None:
    """Finding due work walks the due-time index, not the whole table."""
    env.record("i1")
    query = (
        select(queries.R.id)
        .where(queries.due_filter(datetime.now(UTC), "fireworks"))
        .order_by(queries.R.due_at)
        .limit(10)
    )
    with env.ledger.read() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
    assert "USING INDEX ix_records_provider_due" in " ".join(str(r) for r in plan)
    assert "TEMP B-TREE" not in " ".join(str(r) for r in plan)


def test_policy_change_recomputes_pending_deadlines(make_env) -> None:  # type: ignore[no-untyped-def]
    """A new TTL moves every pending deadline and is logged as policy.loaded."""
    env = make_env()
    env.record("p1", age=timedelta(days=1))
    changed = make_env(policies="version: 1\ndefault:\n  ttl: 12h\n")
    from retention.services.policy_sync import sync_policies

    stats = sync_policies(changed.ledger, changed.policies)
    assert stats is not None and stats["changed"] == 1
    with changed.ledger.read() as conn:
        row = queries.rows_for_id(conn, "p1")[0]
    assert (row.policy, row.deadline - row.created_at) == ("default", timedelta(hours=12))
    assert sync_policies(changed.ledger, changed.policies) is None


def test_hold_added_later_holds_and_release_releases(make_env) -> None:  # type: ignore[no-untyped-def]
    """Adding a hold to the file holds a pending ID; removing it releases the ID."""
    env = make_env()
    env.record("h1")
    held = make_env(
        policies="version: 1\ndefault: {ttl: 30d}\nholds:\n  - {name: lit, ids: [h1]}\n"
    )
    from retention.services.policy_sync import sync_policies

    assert sync_policies(held.ledger, held.policies)["held"] == 1
    released = make_env(policies="version: 1\ndefault: {ttl: 30d}\n")
    assert sync_policies(released.ledger, released.policies)["released"] == 1
    with released.ledger.read() as conn:
        events = list(
            conn.execute(
                text("SELECT event FROM audit_events WHERE response_id = 'h1' ORDER BY seq")
            ).scalars()
        )
    assert events == ["response.recorded", "response.held", "response.released"]


def test_due_time_only_on_pending_records(env: Env) -> None:
    """The database itself refuses a due time on a record that is not pending."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    env.record("c1")
    with pytest.raises(IntegrityError), env.ledger.engine.begin() as conn:
        conn.execute(text("UPDATE records SET state = 'deleted' WHERE response_id = 'c1'"))


def test_kept_counts_match_the_ledger(env: Env) -> None:
    """Counts per state kept by triggers equal a real count after inserts and state changes."""
    env.standin.store.create({"id": "n1"})
    env.standin.store.create({"id": "n4"})  # the sweep's probe looks up recent pending IDs
    env.record("n1", "n2", "n3")
    env.record("n4", age=timedelta(days=1))
    env.sweep()
    with env.ledger.read() as conn:
        real = dict(conn.execute(text("SELECT state, count(*) FROM records GROUP BY state")).all())
        assert queries.counts_by_state(conn) == real == {"deleted": 1, "absent": 2, "pending": 1}
        assert queries.counts_by_provider(conn) == {"fireworks": 4}


def test_chain_lookups_use_the_provider_chain_root_index(env: Env) -> None:
    """Chain queries name the provider, and SQLite must still pick the chain-root index (with
    only `chain_root` indexed it walked all of a provider's records: quadratic imports)."""
    from sqlalchemy import select

    env.record("q1", "q2")
    query = (
        select(queries.R.chain_root)
        .where(queries.R.provider == "fireworks", queries.R.chain_root.in_(["q1", "q2"]))
        .distinct()
    )
    sql = str(query.compile(env.ledger.engine, compile_kwargs={"literal_binds": True}))
    with env.ledger.read() as conn:
        plan = " ".join(str(row) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_records_provider_chain_root" in plan
