"""Erasure by data subject on a real ledger and the stand-in: due at once, holds win, settled."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from retention.errors import InputError
from retention.ledger.models import RECORD_SUBJECTS, RECORDS, AuditEvent
from retention.services.erasure import (
    checked_request,
    erasure_status,
    request_erasure,
    settle,
)
from tests.helpers import POLICIES

HOLD = POLICIES.replace("ids: [resp_held]", "ids: [resp_held, a_held]")


def _env(make_env):  # type: ignore[no-untyped-def]
    """Three subjects' records, young (not due), one of A's under a hold."""
    env = make_env(policies=HOLD)
    young = timedelta(minutes=1)
    env.record("a_1", "a_2", "a_held", age=young, metadata={"user_id": "alice"})
    env.record("b_1", age=young, metadata={"user_id": "bob"})
    env.record("c_1", age=young)
    for rid in ("a_1", "a_2", "a_held", "b_1", "c_1"):
        env.standin.store.create({"id": rid})
    return env


def test_erasure_deletes_the_subject_only_and_withholds_held(make_env):  # type: ignore[no-untyped-def]
    """A's unheld records go at once; B, C and the held one stay; the request completes."""
    env = _env(make_env)
    request = checked_request({"user_id": "alice"}, "ticket 7", "T-7", env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert (summary["matched"], summary["due"], summary["withheld"]) == (3, 2, 1)
    env.sweep()
    assert sorted(env.deletes()) == ["a_1", "a_2"]
    assert settle(env.ledger) == []  # the sweep that deleted them settled the request
    status = erasure_status(env.ledger, summary["erasure_id"])
    assert status["state"] == "completed"
    assert status["counts"]["deleted"] == 2 and status["counts"]["withheld"] == 1
    assert status["withheld"][0]["response_id"] == "a_held"


def test_the_ledger_keeps_no_subject_value(make_env):  # type: ignore[no-untyped-def]
    """Records keep a digest in place of `user_id`; the index holds digests only."""
    env = _env(make_env)
    with env.ledger.read() as conn:
        metas = [r.meta for r in conn.execute(select(RECORDS.c.meta)).all()]
        subjects = [r.subject for r in conn.execute(select(RECORD_SUBJECTS.c.subject)).all()]
    dump = json.dumps(metas) + json.dumps(subjects)
    assert "alice" not in dump and "bob" not in dump
    assert len(subjects) == 4 and all(len(s) == 64 for s in subjects)


def test_erasure_dry_run_writes_nothing(make_env):  # type: ignore[no-untyped-def]
    """--dry-run lists what would go and what is withheld, and changes nothing."""
    env = _env(make_env)
    request = checked_request({"user_id": "alice"}, "check", None, env.settings)
    preview = request_erasure(env.ledger, env.settings, request, dry_run=True)
    assert sorted(i["response_id"] for i in preview["would_delete"]) == ["a_1", "a_2"]
    assert [i["response_id"] for i in preview["withheld"]] == ["a_held"]
    env.sweep()
    assert env.deletes() == []


def test_a_subject_without_records_completes_at_once(make_env):  # type: ignore[no-untyped-def]
    """Nobody by that value: the request is completed with zero records."""
    env = _env(make_env)
    request = checked_request({"user_id": "nobody"}, "asked", None, env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert summary["state"] == "completed" and summary["matched"] == 0


def test_a_second_request_while_the_first_is_open(make_env):  # type: ignore[no-untyped-def]
    """Asked twice before a sweep: both requests complete, neither calls a due record withheld."""
    env = _env(make_env)
    first = request_erasure(
        env.ledger, env.settings, checked_request({"user_id": "alice"}, "one", None, env.settings)
    )
    second = request_erasure(
        env.ledger, env.settings, checked_request({"user_id": "alice"}, "two", None, env.settings)
    )
    env.sweep()
    assert sorted(env.deletes()) == ["a_1", "a_2"]
    for summary in (first, second):
        status = erasure_status(env.ledger, summary["erasure_id"])
        assert status["state"] == "completed"
        assert status["counts"]["deleted"] == 2
        assert [w["hold"] for w in status["withheld"]] == ["case-2026-113"]


def test_a_reason_naming_the_subject_is_refused(make_env):  # type: ignore[no-untyped-def]
    """The reason is signed into the trail: one that holds the subject's value is refused."""
    env = _env(make_env)
    with pytest.raises(InputError, match="reason: it holds the subject's value"):
        checked_request({"user_id": "alice"}, "Alice asked by mail", None, env.settings)
    with pytest.raises(InputError, match="ticket: it holds"):
        checked_request({"user_id": "alice"}, "by mail", "ALICE-1", env.settings)


def test_a_hold_on_a_person_keeps_holding_after_a_re_plan(make_env):  # type: ignore[no-untyped-def]
    """A hold matching `user_id: alice` holds her records as stored (digests), after any
    policy change too, and her erasure withholds them."""
    person = POLICIES.replace(
        'match: {metadata: {matter: "2026-113"}}', "match: {metadata: {user_id: alice}}"
    )
    env = make_env(policies=person)
    env.record("a_1", "a_2", age=timedelta(days=400), metadata={"user_id": "alice"})
    env.record("b_1", age=timedelta(days=400), metadata={"user_id": "bob"})
    changed = make_env(policies=person.replace("ttl: 7d", "ttl: 8d"))  # a re-plan
    assert changed.sweep() is not None
    with changed.ledger.read() as conn:
        states = dict(conn.execute(select(RECORDS.c.response_id, RECORDS.c.state)).all())
    assert (states["a_1"], states["a_2"]) == ("held", "held")
    assert states["b_1"] in ("deleted", "absent")  # what is not held went
    request = checked_request({"user_id": "alice"}, "asked", None, changed.settings)
    assert request_erasure(changed.ledger, changed.settings, request)["withheld"] == 2


def test_the_completion_signs_the_digest_of_the_request_s_records(make_env):  # type: ignore[no-untyped-def]
    """erasure.completed carries records_sha256: SHA-256 of one `PROVIDER<TAB>ID<TAB>OUTCOME`
    line per record of the request, by provider then ID, whatever became of each."""
    env = _env(make_env)
    env.record("a_gone", age=timedelta(minutes=1), metadata={"user_id": "alice"})  # 404: absent
    request = checked_request({"user_id": "alice"}, "ticket 8", None, env.settings)
    erasure_id = request_erasure(env.ledger, env.settings, request)["erasure_id"]
    env.sweep()
    with env.ledger.read() as conn:
        lines = conn.execute(
            select(AuditEvent.line).where(AuditEvent.event == "erasure.completed")
        ).scalars()
        details = [json.loads(line)["details"] for line in lines]
    assert [d["erasure_id"] for d in details] == [erasure_id]
    signed = (
        "fireworks\ta_1\tdeleted\n"
        "fireworks\ta_2\tdeleted\n"
        "fireworks\ta_gone\tabsent\n"
        "fireworks\ta_held\twithheld\n"
    )
    assert details[0]["records_sha256"] == hashlib.sha256(signed.encode()).hexdigest()
    assert "records_sha256" not in erasure_status(env.ledger, erasure_id)  # the event's alone
