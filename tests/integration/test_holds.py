"""Legal holds placed and lifted in the ledger, in process on a real ledger and the stand-in:
they act as the policies file's holds do, every step is audited, and none is undone by a
process that read the policies before it was placed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text, update

from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.vocabulary import MetaKey
from retention.errors import ConfigError, ConflictError, InputError, NotFoundError
from retention.ledger import queries
from retention.ledger.models import RECORDS
from retention.services.erasure import checked_request, request_erasure
from retention.services.holds import (
    checked_hold,
    lift_expired,
    lift_hold,
    list_holds,
    place_hold,
)
from retention.services.policies_in_force import policies_in_force
from retention.services.policy_sync import sync_policies
from retention.services.recording import enrol
from retention.sweep.runner import sweep_once
from retention.views.explain import explain_id
from tests.helpers import POLICIES
from tests.integration.conftest import Env, on_postgres


def fresh(env: Env) -> PolicySet:
    """The policies in force as a command reads them: the file and the ledger's holds."""
    return policies_in_force(env.settings, ledger=env.ledger)


def place(env: Env, **fields: Any) -> dict[str, Any]:
    """Place a hold as `retention hold add` does (policies applied first)."""
    fields.setdefault("reason", "litigation M-7")
    request = checked_hold(env.settings, now=datetime.now(UTC), **fields)
    policies = fresh(env)
    sync_policies(env.ledger, policies)
    return place_hold(env.ledger, policies, request, actor="cli:tester")


def states(env: Env) -> dict[str, str]:
    """Each response ID's state."""
    with env.ledger.read() as conn:
        return dict(conn.execute(text("SELECT response_id, state FROM records")).all())  # type: ignore[arg-type]


def trail(env: Env, name: str) -> list[dict[str, Any]]:
    """The audit file's records of one event, in order."""
    lines = env.settings.audit.file.read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == name]


def test_a_hold_holds_open_records_at_once_and_says_so(env: Env) -> None:
    """Listed and matched open records are held in the placing transaction, with
    `hold.placed` (reason, ticket, actor, counts) and one `response.held` each; a sweep by a
    process that read its policies before deletes only the others."""
    env.record("a1", "a2", "a3")
    env.record("m1", metadata={"matter": "M-7"})
    placed = place(
        env, ids=["a1", "later1"], match={"metadata": {"matter": "M-7"}}, ticket="LEG-1", name="m7"
    )
    assert (placed["held"], placed["not_recorded"], placed["already_held"]) == (2, 1, 0)
    assert placed["state"] == "active" and placed["actor"] == "cli:tester"
    assert states(env) == {"a1": "held", "a2": "pending", "a3": "pending", "m1": "held"}
    [event] = trail(env, "hold.placed")
    assert event["details"]["hold"] == "m7" and event["details"]["ticket"] == "LEG-1"
    assert event["details"]["reason"] == "litigation M-7"
    assert event["details"]["match"] == {"metadata": {"matter": "M-7"}}
    held = trail(env, "response.held")
    assert sorted(e["response_id"] for e in held) == ["a1", "m1"]
    assert {e["details"]["hold"] for e in held} == {"m7"}
    with env.ledger.read() as conn:
        assert queries.get_meta(conn, MetaKey.POLICY_DIGEST) == fresh(env).digest()
    env.sweep()  # env.policies were read before the hold: the ledger's say wins
    assert sorted(env.deletes()) == ["a2", "a3"]
    assert states(env)["a1"] == "held"


def test_ids_recorded_later_come_in_held(env: Env) -> None:
    """An ID a hold lists that the ledger lacks is held when it is recorded, by a process that
    read the policies after the hold or before it alike."""
    place(env, ids=["late1", "late2"], name="pre")
    created = datetime.now(UTC) - timedelta(days=40)
    enrol(env.ledger, env.settings, fresh(env), [NewRecord("late1", created_at=created)])
    env.record("late2", "free")  # env.policies were read before the hold
    assert states(env) == {"late1": "held", "late2": "held", "free": "pending"}
    assert [e["response_id"] for e in trail(env, "response.held")] == ["late1", "late2"]
    env.sweep()
    assert env.deletes() == ["free"]


def escape(env: Env, rid: str) -> None:
    """Leave a held record pending under no hold, as a race before the policies lock could."""
    with env.ledger.transaction() as conn:
        conn.execute(
            text(
                "UPDATE records SET state = 'pending', hold = NULL, due_at = deadline "
                "WHERE response_id = :r"
            ),
            {"r": rid},
        )


def test_the_last_look_reads_the_ledgers_holds_and_holds_what_escaped(env: Env) -> None:
    """A record a placed hold covers but left pending is claimed, never sent, and held there
    with its `response.held` (the last look reads the ledger's holds, whether the sweep's
    policies know the hold or not); the next sweep claims nothing."""
    env.record("skew1", "free")
    place(env, ids=["skew1"], name="unknown")
    escape(env, "skew1")
    report = env.sweep()  # env.policies were read before the hold
    assert env.deletes() == ["free"] and report.total("skipped") == 1
    env.record("skew2")
    place(env, ids=["skew2"], name="known")
    escape(env, "skew2")
    now = lambda: datetime.now(UTC)  # noqa: E731
    report = asyncio.run(sweep_once(env.ledger, env.settings, fresh(env), clock=now))
    assert report.total("skipped") == 1 and env.deletes() == ["free"]
    with env.ledger.read() as conn:
        rows = conn.execute(text("SELECT response_id, state, hold, lease_owner FROM records"))
        found = {r.response_id: (r.state, r.hold, r.lease_owner) for r in rows}
    assert found["skew1"] == ("held", "unknown", None)
    assert found["skew2"] == ("held", "known", None)
    held = [e["response_id"] for e in trail(env, "response.held")]
    assert held == ["skew1", "skew1", "skew2", "skew2"], "placed, then held again"
    assert asyncio.run(sweep_once(env.ledger, env.settings, fresh(env), clock=now)).requests == 0


def test_failed_and_in_flight_records_a_hold_covers(env: Env) -> None:
    """`hold.placed` counts a listed record whose deletion failed as `failed` (still at the
    provider) and a leased one as `in_flight`; an erasure later reopens the failed one held,
    as a retry does, and withholds it; no sweep sends its DELETE."""
    env.record("f1", "l1", age=timedelta(minutes=1), metadata={"user_id": "U-5555"})
    with env.ledger.transaction() as conn:
        conn.execute(
            text(
                "UPDATE records SET state = 'failed', due_at = NULL, attempts = 5, "
                "closed_at = updated_at WHERE response_id = 'f1'"
            )
        )
        conn.execute(  # a sweep's lease, live for 5 more minutes
            update(RECORDS)
            .where(RECORDS.c.response_id == "l1")
            .values(lease_owner="x", lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
    placed = place(env, ids=["f1", "l1"], name="lit")
    counts = {k: placed[k] for k in ("held", "in_flight", "failed", "closed")}
    assert counts == {"held": 1, "in_flight": 1, "failed": 1, "closed": 0}
    assert trail(env, "hold.placed")[0]["details"]["failed"] == 1
    request = checked_request({"user_id": "U-5555"}, "DSR-10", None, env.settings)
    preview = request_erasure(env.ledger, env.settings, request, dry_run=True)
    assert [w["hold"] for w in preview["withheld"]] == ["lit", "lit"]
    summary = request_erasure(env.ledger, env.settings, request)
    assert (summary["due"], summary["reopened"], summary["withheld"]) == (0, 0, 2)
    assert states(env) == {"f1": "held", "l1": "held"}
    [requeued] = trail(env, "response.requeued")
    assert requeued["details"]["state"] == "held" and requeued["details"]["hold"] == "lit"
    env.sweep()
    assert env.deletes() == []


def test_lifting_releases_what_no_other_hold_keeps(env: Env) -> None:
    """`hold.lifted` with its reason and the hold's ticket; `response.released` for the
    record no other hold keeps (due at once: its deadline passed); one also under a later
    hold stays held, now under that one; the next sweep deletes the released one only."""
    env.record("b1", "b3")
    place(env, ids=["b1", "b3"], name="first", ticket="LEG-2")
    second = place(env, ids=["b3"], name="second")
    assert (second["held"], second["already_held"]) == (0, 1)
    lifted = lift_hold(env.ledger, fresh(env), "first", reason="case settled", actor="cli:tester")
    assert (lifted["released"], lifted["still_held"], lifted["due_now"]) == (1, 1, 1)
    assert lifted["state"] == "lifted" and lifted["lifted_reason"] == "case settled"
    [event] = trail(env, "hold.lifted")
    details = event["details"]
    assert (details["hold"], details["reason"], details["ticket"]) == (
        "first",
        "case settled",
        "LEG-2",
    )
    assert (details["actor"], details["expired"]) == ("cli:tester", False)
    assert [e["response_id"] for e in trail(env, "response.released")] == ["b1"]
    with env.ledger.read() as conn:
        holds = dict(conn.execute(text("SELECT response_id, hold FROM records")).all())  # type: ignore[arg-type]
    assert holds == {"b1": None, "b3": "second"}
    env.sweep()
    assert env.deletes() == ["b1"]


def test_an_expired_hold_lifts_itself_before_the_sweep_claims(env: Env) -> None:
    """A hold with `until` keeps its records through a sweep before it; the first sweep after
    it lifts it (actor `expiry`) and deletes them in the same pass."""
    env.record("e1", "e2")
    env.standin.store.create({"id": "e1"})
    placed = place(env, ids=["e1", "e2"], until="1h", ticket="LEG-3")
    until = datetime.fromisoformat(placed["until"])
    assert timedelta(minutes=59) < until - datetime.now(UTC) <= timedelta(hours=1)
    env.sweep()
    assert env.deletes() == []
    later = datetime.now(UTC) + timedelta(hours=2)
    report = asyncio.run(sweep_once(env.ledger, env.settings, env.policies, clock=lambda: later))
    assert (report.total("deleted"), report.total("absent")) == (1, 1)
    [event] = trail(env, "hold.lifted")
    assert (event["details"]["actor"], event["details"]["expired"]) == ("expiry", True)
    assert event["details"]["ticket"] == "LEG-3" and event["details"]["released"] == 2
    assert lift_expired(env.ledger, fresh(env), later) == [], "once only"
    assert list_holds(env.ledger, fresh(env))[-1]["name"] != placed["name"]


def test_names_are_used_once_and_mistakes_are_named(env: Env) -> None:
    """A generated name has its form; a name taken in the ledger (lifted too) or by the file
    is refused; unknown, file and lifted holds cannot be lifted; bad fields are named."""
    env.record("n1")
    made = place(env, ids=["n1"])
    assert made["name"].startswith(f"hold-{datetime.now(UTC):%Y%m%d}-")
    assert len(made["name"]) == len("hold-YYYYMMDD-") + 4
    with pytest.raises(ConflictError, match="taken by a hold placed"):
        place(env, ids=["n1"], name=made["name"])
    with pytest.raises(ConflictError, match="is a hold of"):
        place(env, ids=["n1"], name="case-2026-113")
    lift_hold(env.ledger, fresh(env), made["name"], reason="done", actor="t")
    with pytest.raises(ConflictError, match="taken by a hold lifted"):
        place(env, ids=["n1"], name=made["name"])
    with pytest.raises(ConflictError, match="was lifted at"):
        lift_hold(env.ledger, fresh(env), made["name"], reason="again", actor="t")
    with pytest.raises(ConflictError, match="removed from that file"):
        lift_hold(env.ledger, fresh(env), "case-2026-113", reason="r", actor="t")
    with pytest.raises(NotFoundError, match="no hold 'nope'"):
        lift_hold(env.ledger, fresh(env), "nope", reason="r", actor="t")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"ids": ["ok"], "reason": " "}, "reason: say why"),
        ({}, "ids: give the IDs"),
        ({"ids": ["bad id"]}, "ids[0]: invalid response ID"),
        ({"ids": ["ok"], "until": "yesterday"}, "until: expected"),
        ({"ids": ["ok"], "until": "2001-01-01"}, "until: 2001-01-01T00:00:00.000000Z has passed"),
        ({"match": {"metadata": {"matter": 7}}}, "match.metadata.matter: expected a string"),
        ({"match": {"provider": "nowhere"}}, "match.provider: 'nowhere' is not a configured"),
        ({"match": {"colour": "red"}}, "match: unknown key 'colour'"),
        ({"match": {}}, "match: give at least one condition"),
        ({"match": {"metadata": {}}}, "match: give at least one condition"),
        ({"match": {"account": "a" * 257}}, "match.account: at most 256 characters"),
        ({"match": {"metadata": {"k": "v" * 513}}}, "match.metadata.k: at most 512"),
        ({"ids": ["ok"], "name": "a b"}, "name: 'a b' is not a hold name"),
    ]
    for fields, message in bad:
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            place(env, **fields)


def test_the_digest_follows_and_stale_readers_never_undo(make_env: Callable[..., Env]) -> None:
    """The ledger's digest is that of the file and its holds; a process applying policies it
    read before the hold changes nothing; a file hold taking an active hold's name is refused."""
    env = make_env()
    env.record("d1")
    before = fresh(env)
    place(env, ids=["d1"], name="dig")
    after = fresh(env)
    assert before.digest() != after.digest()
    assert sync_policies(env.ledger, before) is None, "nothing to undo"
    assert states(env) == {"d1": "held"}
    assert [h.name for h in after.holds] == ["case-2026-113", "dig"]
    (env.path / "policies.yaml").write_text(
        POLICIES + "  - name: dig\n    ids: [zz]\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="'dig' is taken by a hold placed in the ledger"):
        fresh(env)


def test_a_hold_on_a_person_keeps_only_their_digest_and_wins_over_erasure(env: Env) -> None:
    """A match on a subject key is kept as the value's digest (never the value, nor in the
    reason); the person's erasure withholds the held records."""
    env.record("u1", "u2", age=timedelta(minutes=1), metadata={"user_id": "U-1234"})
    with pytest.raises(InputError, match="reason: it holds a data subject's value"):
        place(env, match={"metadata": {"user_id": "U-1234"}}, reason="keep U-1234")
    placed = place(env, match={"metadata": {"user_id": "U-1234"}}, reason="order 88")
    assert placed["held"] == 2
    assert placed["match"]["metadata"]["user_id"].startswith("hmac-sha256:")
    assert "U-1234" not in env.settings.audit.file.read_text()
    request = checked_request({"user_id": "U-1234"}, "DSR-9", None, env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert (summary["matched"], summary["due"], summary["withheld"]) == (2, 0, 2)


def test_a_hold_placed_mid_sweep_stops_the_waiting_deletes(env: Env) -> None:
    """Placed by another thread while requests wait their turn: none of the waiting ones is
    sent, though the sweep's own policies never heard of it."""
    env.standin.knobs.update({"latency_ms": 300})
    ids = [f"w{i}" for i in range(40)]
    env.record(*ids)

    async def scenario() -> None:
        sweep = asyncio.create_task(
            sweep_once(env.ledger, env.settings, env.policies, clock=lambda: datetime.now(UTC))
        )
        await asyncio.sleep(0.1)
        await asyncio.to_thread(place, env, match={"provider": "fireworks"}, name="freeze")
        await sweep

    asyncio.run(scenario())
    sent = env.deletes()
    assert len(sent) <= 8, "only the requests already on the wire (max_concurrency 8)"
    left = {states(env)[i] for i in ids if i not in sent}
    assert left == {"held"}


def test_explain_names_the_hold_its_reason_and_ticket(env: Env) -> None:
    """`explain` of a held ID shows who placed its hold, why and under which ticket."""
    env.record("x1")
    place(env, ids=["x1"], name="why", ticket="LEG-9")
    [record] = explain_id(env.ledger, fresh(env), "x1")["records"]
    detail = record["hold_detail"]
    assert (detail["name"], detail["reason"], detail["ticket"]) == (
        "why",
        "litigation M-7",
        "LEG-9",
    )
    env.record("resp_held")
    [file_held] = explain_id(env.ledger, fresh(env), "resp_held")["records"]
    assert file_held["hold_detail"]["source"] == "policies_file"


@pytest.mark.postgres
def test_place_lift_and_expire_on_postgres(
    pg_url: str, make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL: the migration, a hold placed, lifted by its `until`, the records swept."""
    env = on_postgres(pg_url, make_env, monkeypatch)
    env.record("p1", "p2")
    placed = place(env, ids=["p1", "p2"], match={"model": "m-*"}, until="1h", name="pg")
    assert placed["held"] == 2 and states(env) == {"p1": "held", "p2": "held"}
    assert [h["name"] for h in list_holds(env.ledger, fresh(env))] == ["case-2026-113", "pg"]
    later = datetime.now(UTC) + timedelta(hours=2)
    asyncio.run(sweep_once(env.ledger, env.settings, env.policies, clock=lambda: later))
    assert states(env) == {"p1": "absent", "p2": "absent"}
    assert trail(env, "hold.lifted")[0]["details"]["expired"] is True
