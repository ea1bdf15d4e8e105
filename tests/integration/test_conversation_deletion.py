"""Conversations are deleted items first, then the conversation, each step in the trail."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from retention.core.vocabulary import ObjectKind, Outcome
from retention.ledger.models import AUDIT_EVENTS, RECORDS
from retention.services.erasure import checked_request, erasure_status, request_erasure
from tests.integration.conftest import Env


def conversation_with(env: Env, items: int) -> str:
    """A conversation at the stand-in holding `items` items; its ID."""
    made = env.standin.conversations.create(
        {"items": [{"role": "user", "content": f"turn {n}"} for n in range(items)]}
    )
    return str(made["id"])


def events(env: Env, name: str) -> list[dict[str, object]]:
    """The ledger's events of one name, in order."""
    with env.ledger.read() as conn:
        lines = conn.execute(
            select(AUDIT_EVENTS.c.line)
            .where(AUDIT_EVENTS.c.event == name)
            .order_by(AUDIT_EVENTS.c.seq)
        ).scalars()
        return [json.loads(line) for line in lines]


def test_a_due_conversation_is_deleted_with_every_item_first(make_env: Callable[..., Env]) -> None:
    """A conversation of 250 items: the items go in pages, then the conversation; the stand-in
    holds none of them afterwards, and `conversation.deleted` counts the 250."""
    env = make_env()
    cid = conversation_with(env, 250)
    env.record(cid, object=ObjectKind.CONVERSATION)
    summary = env.sweep()
    assert summary.total(Outcome.DELETED) == 1
    census = env.standin.conversations.census()[cid]
    assert census == {"deleted": True, "items": 0}
    (deleted,) = events(env, "conversation.deleted")
    assert deleted["response_id"] == cid and deleted["details"]["items"] == 250
    pages = events(env, "conversation.items_deleted")
    assert [p["details"]["items"] for p in pages] == [100, 100, 50]
    with env.ledger.read() as conn:
        state, items = conn.execute(
            select(RECORDS.c.state, RECORDS.c.items_deleted).where(RECORDS.c.response_id == cid)
        ).one()
    assert (state, items) == ("deleted", 250)


def test_a_conversation_gone_already_is_absent(make_env: Callable[..., Env]) -> None:
    """A conversation the stand-in never had: its item listing answers 404, so it is `absent`
    (the provider's own answer), and nothing is deleted."""
    env = make_env()
    env.record("conv_never_made", object=ObjectKind.CONVERSATION)
    summary = env.sweep()
    assert summary.total(Outcome.ABSENT) == 1 and not env.deletes()


def test_erasure_by_subject_deletes_their_conversations_and_nothing_else(
    make_env: Callable[..., Env],
) -> None:
    """Alice's two conversations (a young one too) and her response go, items first, at her
    erasure request; Bob's conversation keeps every item."""
    env = make_env()
    young = timedelta(minutes=1)
    mine = [conversation_with(env, 12), conversation_with(env, 3)]
    bobs = conversation_with(env, 7)
    env.record(*mine, age=young, object=ObjectKind.CONVERSATION, metadata={"user_id": "alice"})
    env.record(bobs, age=young, object=ObjectKind.CONVERSATION, metadata={"user_id": "bob"})
    env.standin.store.create({"id": "resp_alice"})
    env.record("resp_alice", age=young, metadata={"user_id": "alice"})
    request = checked_request({"user_id": "alice"}, "asked by mail", "T-9", env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert (summary["matched"], summary["due"]) == (3, 3)
    env.sweep()
    census = env.standin.conversations.census()
    assert [census[c] for c in mine] == [{"deleted": True, "items": 0}] * 2
    assert census[bobs] == {"deleted": False, "items": 7}
    assert env.deletes().count("resp_alice") == 1
    deleted = events(env, "conversation.deleted")
    assert sorted(e["response_id"] for e in deleted) == sorted(mine)
    assert all(e["details"]["erasure_id"] == summary["erasure_id"] for e in deleted)
    assert erasure_status(env.ledger, summary["erasure_id"])["state"] == "completed"
