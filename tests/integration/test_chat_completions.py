"""Stored chat completions (`object: chat.completion`) against the stand-in's flavours: deleted
and verified where the provider can delete them; where it cannot (Llama Stack's 405, Fireworks'
missing API), kept pending, charged nothing, with one `provider.cannot_delete`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from retention.core.vocabulary import ObjectKind, Outcome
from retention.discover import DiscoverySummary, discover
from retention.ledger.models import RECORDS
from retention.services.erasure import checked_request, erasure_status, request_erasure
from retention.services.policy_sync import sync_policies
from retention.standin import StandIn
from retention.standin.chat_completions import completion_of
from tests.helpers import KINDS
from tests.integration.conftest import Env

VERIFY = "    verify_after_delete: true\n"


@pytest.fixture
def at(make_env: Callable[..., Env], standin: StandIn) -> Callable[..., Env]:
    """An Env whose stand-in plays a flavour, configured as that provider's users would."""

    def build(flavor: str, **kw: str) -> Env:
        standin.knobs.flavor = flavor
        if flavor != "fireworks":
            standin.account = None  # the account header is Fireworks' own
        return make_env(kind=KINDS[flavor], **kw)

    return build


def stored(env: Env, count: int, **metadata: str) -> list[str]:
    """`count` chat completions made with `store: true` at the stand-in, a second apart, the
    last one now; their IDs."""
    now = int(datetime.now(UTC).timestamp())
    made = [completion_of({"created": now - n}) for n in range(count)]
    for completion in made:
        env.standin.chats.keep(completion, {"metadata": metadata, "store": True})
    return [c["id"] for c in made]


def rows(env: Env) -> dict[str, tuple[str, int]]:
    """Each record's (state, attempts)."""
    r = RECORDS.c
    with env.ledger.read() as conn:
        found = conn.execute(select(r.response_id, r.state, r.attempts)).all()
    return {rid: (state, attempts) for rid, state, attempts in found}


def test_due_chat_completions_are_deleted_and_verified(at: Callable[..., Env]) -> None:
    """On an OpenAI-like server each due chat completion gets DELETE /chat/completions/{id},
    a GET answering 404, and its `response.deleted` naming the object; responses beside them
    go their own way."""
    env = at("openai", provider_extra=VERIFY)
    ids = stored(env, 5)
    env.standin.store.create({"id": "resp_beside"})
    env.record(*ids, object=ObjectKind.CHAT_COMPLETION)
    env.record("resp_beside")
    report = env.sweep()
    assert (report.total(Outcome.DELETED), report.exit_code) == (6, 0)
    assert env.standin.chats.completions == {}
    assert {state for state, _ in rows(env).values()} == {"deleted"}
    deleted = env.events("response.deleted")
    chats = [e for e in deleted if e["details"].get("object") == "chat.completion"]  # type: ignore[union-attr]
    assert sorted(e["response_id"] for e in chats) == sorted(ids)
    assert all(e["details"]["verified"] for e in chats)  # type: ignore[index]
    paths = {(s.method, s.path) for s in env.standin.store.seen}
    assert ("GET", f"/v1/chat/completions/{ids[0]}") in paths  # the flavour's own path


@pytest.mark.parametrize(
    ("flavor", "status"), [("llamastack", 405), ("fireworks", 404)], ids=["405", "no API"]
)
def test_a_provider_that_cannot_delete_them_keeps_them_pending_with_one_event(
    at: Callable[..., Env], flavor: str, status: int
) -> None:
    """Llama Stack answers 405 to DELETE; Fireworks has no chat completions API at all. Either
    way nothing is `deleted` or `absent`: every ID stays pending with no attempt charged, the
    sweep exits 1, and one `provider.cannot_delete` names the provider and kind, however many
    sweeps meet it."""
    env = at(flavor)
    ids = stored(env, 4) if flavor == "llamastack" else ["chatcmpl-a", "chatcmpl-b"]
    env.standin.store.create({"id": "resp_fine"})
    env.record(*ids, object=ObjectKind.CHAT_COMPLETION)
    env.record("resp_fine")
    first = env.sweep()
    assert first.total(Outcome.UNSUPPORTED) == len(ids) and first.exit_code == 1
    assert first.total(Outcome.DELETED) == 1, "the responses of the provider are deleted"
    assert {rid: rows(env)[rid] for rid in ids} == dict.fromkeys(ids, ("pending", 0))
    with env.ledger.transaction() as conn:  # due again, as an hour later
        conn.execute(update(RECORDS).where(RECORDS.c.state == "pending").values(due_at=None))
    env.sweep()
    (event,) = env.events("provider.cannot_delete")
    assert event["provider"] == "fireworks" and event["http_status"] == status
    assert event["details"] == {"object": "chat.completion"}
    assert not env.events("response.absent") and rows(env)[ids[0]] == ("pending", 0)
    deletes = [s.path for s in env.standin.store.seen if s.method == "DELETE"]
    assert not [p for p in deletes if "chat" in p and flavor == "fireworks"]


@pytest.mark.parametrize(
    ("flavor", "said"),
    [("openai", "cannot see the recorded chat.completion objects"), ("llamastack", "400")],
)
def test_a_key_that_cannot_see_them_stops_before_marking_any_absent(
    at: Callable[..., Env], flavor: str, said: str
) -> None:
    """Another principal's key: the provider answers 404 to each recorded chat completion (400
    on Llama Stack), so the sweep stops that provider as misconfigured; none is `absent`, none
    charged."""
    env = at(flavor)
    env.standin.blind_key = "test-key"  # the key the config sends now sees nothing
    ids = stored(env, 3)
    env.record(*ids, object=ObjectKind.CHAT_COMPLETION)
    report = env.sweep()
    assert report.exit_code == 1 and report.total(Outcome.ABSENT) == 0
    (event,) = env.events("provider.misconfigured")
    assert said in str(event["error"])
    assert set(rows(env).values()) == {("pending", 0)}
    assert len(env.standin.chats.completions) == 3


def test_discovery_enrols_the_chat_completions_a_provider_lists(
    at: Callable[..., Env],
) -> None:
    """250 stored chat completions at an OpenAI-like server: one crawl of their listing, newest
    first, enrols all 250 as `chat.completion` with their metadata; a second reads one page.
    A provider that keeps none (Fireworks) is no error."""
    env = at("openai")
    ids = stored(env, 250, user_id="alice")
    sync_policies(env.ledger, env.policies)

    def crawl(kind: ObjectKind) -> DiscoverySummary:
        return asyncio.run(
            discover(
                env.ledger,
                env.settings,
                env.policies,
                "fireworks",
                clock=lambda: datetime.now(UTC),
                kind=kind,
            )
        )

    first = crawl(ObjectKind.CHAT_COMPLETION)
    assert (first.enrolled, first.complete, first.error) == (250, True, None)
    with env.ledger.read() as conn:
        found = conn.execute(select(RECORDS.c.response_id, RECORDS.c.object, RECORDS.c.meta))
        kinds = {rid: (kind, meta) for rid, kind, meta in found}
    assert set(kinds) == set(ids)
    assert {kind for kind, _ in kinds.values()} == {"chat.completion"}
    assert all(meta for _, meta in kinds.values()), "the subject is pseudonymised, not lost"
    assert crawl(ObjectKind.CHAT_COMPLETION).pages == 1
    env.standin.knobs.flavor = "fireworks"
    none = crawl(ObjectKind.CHAT_COMPLETION)
    assert none.unsupported and none.error is None


def test_erasure_by_subject_deletes_their_chat_completions_and_nothing_else(
    at: Callable[..., Env],
) -> None:
    """Alice's chat completions, young ones too, go at her erasure request; Bob's stay."""
    env = at("openai")
    young = timedelta(minutes=1)
    alices, bobs = stored(env, 3), stored(env, 2)
    chat = ObjectKind.CHAT_COMPLETION
    env.record(*alices, age=young, object=chat, metadata={"user_id": "alice"})
    env.record(*bobs, age=young, object=chat, metadata={"user_id": "bob"})
    request = checked_request({"user_id": "alice"}, "asked by mail", "T-10", env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert (summary["matched"], summary["due"]) == (3, 3)
    env.sweep()
    assert sorted(env.standin.chats.completions) == sorted(bobs)
    deleted = env.events("response.deleted")
    assert sorted(e["response_id"] for e in deleted) == sorted(alices)
    assert all(e["details"]["erasure_id"] == summary["erasure_id"] for e in deleted)  # type: ignore[index]
    assert erasure_status(env.ledger, summary["erasure_id"])["state"] == "completed"
