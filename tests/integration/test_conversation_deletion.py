"""Conversations are deleted items first, then the conversation, each step in the trail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from retention.audit.receipt_format import check_receipt, receipt_text
from retention.core.record_input import NewRecord
from retention.core.vocabulary import ObjectKind, Outcome
from retention.evidence.receipts import issue_receipt
from retention.evidence.signing_key import Signer
from retention.ledger.models import RECORDS
from retention.services.erasure import checked_request, erasure_status, request_erasure
from retention.services.recording import enrol
from tests.integration.conftest import Env


def conversation_with(env: Env, items: int) -> str:
    """A conversation at the stand-in holding `items` items; its ID."""
    made = env.standin.conversations.create(
        {"items": [{"role": "user", "content": f"turn {n}"} for n in range(items)]}
    )
    return str(made["id"])


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
    (deleted,) = env.events("conversation.deleted")
    assert deleted["response_id"] == cid and deleted["details"]["items"] == 250
    pages = env.events("conversation.items_deleted")
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
    deleted = env.events("conversation.deleted")
    assert sorted(e["response_id"] for e in deleted) == sorted(mine)
    assert all(e["details"]["erasure_id"] == summary["erasure_id"] for e in deleted)
    assert erasure_status(env.ledger, summary["erasure_id"])["state"] == "completed"


def test_verify_after_delete_lists_the_items_and_expects_404(
    make_env: Callable[..., Env],
) -> None:
    """With `verify_after_delete`, the conversation is `deleted` only once its item listing
    answers 404, and the event says it was verified."""
    env = make_env(provider_extra="    verify_after_delete: true\n")
    cid = conversation_with(env, 4)
    env.record(cid, object=ObjectKind.CONVERSATION)
    assert env.sweep().total(Outcome.DELETED) == 1
    (deleted,) = env.events("conversation.deleted")
    assert deleted["details"]["verified"] is True and deleted["details"]["items"] == 4
    lists = [s for s in env.standin.store.seen if s.method == "GET" and s.path.endswith("/items")]
    assert lists[-1].status == 404


def test_item_deletions_answered_429_are_sent_again(make_env: Callable[..., Env]) -> None:
    """A provider answering 429 to a third of its requests: each 429 is honoured (never
    charged as an attempt), the deletion goes on from what is left, over as many sweeps as the
    waits take, and the conversation goes once every item has, with one `conversation.deleted`."""
    env = make_env()
    cid = conversation_with(env, 12)
    env.record(cid, object=ObjectKind.CONVERSATION)
    env.standin.knobs.update({"rate_429": 0.3, "retry_after": 0})
    for _ in range(20):
        env.sweep()
        if env.standin.conversations.census()[cid]["deleted"]:
            break
        time.sleep(0.3)  # the provider's wait, at most a second
    assert env.standin.conversations.census()[cid] == {"deleted": True, "items": 0}
    assert any(s.status == 429 for s in env.standin.store.seen)
    (deleted,) = env.events("conversation.deleted")
    assert deleted["details"]["items"] == 12 and deleted["attempt"] == 1


def test_a_receipt_proves_a_conversations_deletion(make_env: Callable[..., Env]) -> None:
    """`conversation.deleted` is a deletion a receipt proves, under the pinned key."""
    env = make_env(extra="audit:\n  file: audit.jsonl\n  signing_key_file: signing.key\n")
    cid = conversation_with(env, 2)
    env.record(cid, object=ObjectKind.CONVERSATION)
    env.sweep()
    signer = Signer.from_file(env.path / "signing.key", create=True)
    receipt = issue_receipt(env.ledger, cid, signer=signer, interval=timedelta(seconds=0))
    assert receipt["record"]["event"] == "conversation.deleted"
    assert check_receipt(receipt_text(receipt), signer.public) is None


ACTIVE_CHATS = """\
version: 1
default: {ttl: 30d}
policies:
  - name: chats
    match: {object: conversation}
    ttl: 1s
    ttl_from: last_activity
"""


def test_a_turn_made_during_the_deletion_stops_it(make_env: Callable[..., Env]) -> None:
    """A conversation of 300 items being deleted slowly: a turn recorded after its first page
    moves its deadline, the sweep's next look finds it no longer due and stops, and the
    conversation is still there with the items left."""
    env = make_env(policies=ACTIVE_CHATS)
    cid = conversation_with(env, 300)
    env.record(cid, age=timedelta(0), object=ObjectKind.CONVERSATION)
    time.sleep(1.1)  # due
    env.standin.knobs.update({"latency_ms": 20})
    sweeping = threading.Thread(target=env.sweep)
    sweeping.start()
    waited = time.monotonic() + 30
    while not env.events("conversation.items_deleted") and time.monotonic() < waited:
        time.sleep(0.02)
    assert env.events("conversation.items_deleted"), [s for s in env.standin.store.seen][-5:]
    env.standin.store.create({"id": "resp_turn"})
    enrol(env.ledger, env.settings, env.policies, [NewRecord("resp_turn", conversation=cid)])
    sweeping.join(60)
    census = env.standin.conversations.census()[cid]
    assert census["deleted"] is False and 0 < census["items"] < 300
    assert not env.events("conversation.deleted")
    (moved,) = [e for e in env.events("response.deadline_changed") if e["response_id"] == cid]
    assert moved["details"]["turn"] == "resp_turn"
