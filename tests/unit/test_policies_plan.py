"""Which policy applies, when a response is due, and that holds always win."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from retention.config.policyfile import parse_policies
from retention.core.plan import decide, plan
from retention.core.policies import Hold, Match
from retention.core.records import ResponseFacts
from tests.helpers import POLICIES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = parse_policies(POLICIES)


def facts(
    rid: str = "resp_1", *, age: timedelta | None = timedelta(days=1), **kw: object
) -> ResponseFacts:
    """A response created `age` ago (None: created_at unknown, first seen now - 1h)."""
    return ResponseFacts(
        response_id=rid,
        provider=kw.pop("provider", "fireworks"),  # type: ignore[arg-type]
        created_at=NOW - age if age is not None else None,
        first_seen_at=NOW - timedelta(hours=1),
        **kw,
    )  # type: ignore[arg-type]


def test_first_matching_policy_wins() -> None:
    """A pii response of an eval model gets pii, the earlier policy."""
    item = facts(metadata={"data_class": "pii"}, model="accounts/fireworks/models/eval-7b")
    assert decide(item, RULES).policy == "pii"


def test_model_glob_and_provider_must_both_match() -> None:
    """The evals policy needs the fireworks provider and a model under the glob."""
    assert decide(facts(model="accounts/fireworks/models/x"), RULES).policy == "evals"
    assert decide(facts(model="accounts/other/models/x"), RULES).policy == "default"
    assert (
        decide(facts(model="accounts/fireworks/models/x", provider="openai"), RULES).policy
        == "default"
    )


def test_default_applies_when_nothing_matches() -> None:
    """No match means the required default."""
    decision = decide(facts(), RULES)
    assert (decision.policy, decision.deadline) == (
        "default",
        NOW - timedelta(days=1) + timedelta(days=30),
    )


def test_deadline_counts_from_first_seen_when_created_at_is_unknown() -> None:
    """Without created_at the TTL counts from when the ledger first saw the ID."""
    decision = decide(facts(age=None), RULES)
    assert decision.basis == "first_seen"
    assert decision.deadline == NOW - timedelta(hours=1) + timedelta(days=30)


def test_held_record_is_never_planned() -> None:
    """A record under a legal hold stays out of the plan even long past its deadline."""
    by_id = facts("resp_held", age=timedelta(days=400))
    by_match = facts("resp_2", age=timedelta(days=400), metadata={"matter": "2026-113"})
    assert plan([by_id, by_match], RULES, NOW) == []
    assert decide(by_match, RULES).hold == "case-2026-113"


def test_nothing_is_due_before_its_deadline() -> None:
    """Due exactly at the deadline, never a microsecond before."""
    item = facts(age=timedelta(days=30))
    assert decide(item, RULES).is_due(NOW)
    assert not decide(item, RULES).is_due(NOW - timedelta(microseconds=1))


def test_plan_orders_by_deadline() -> None:
    """The plan lists the most overdue first."""
    items = [
        facts("a", age=timedelta(days=31)),
        facts("b", age=timedelta(days=40)),
        facts("c", age=timedelta(days=2)),
    ]
    assert [p.facts.response_id for p in plan(items, RULES, NOW)] == ["b", "a"]


def test_extra_holds_apply() -> None:
    """Holds kept beside the file protect too."""
    hold = Hold(name="ledger-hold", ids=frozenset({"a"}))
    assert plan([facts("a", age=timedelta(days=40))], RULES, NOW, (hold,)) == []


def test_digest_ignores_formatting_but_not_meaning() -> None:
    """Comments and layout do not change the digest; a TTL does."""
    assert parse_policies("# note\n" + POLICIES).digest() == RULES.digest()
    assert parse_policies(POLICIES.replace("ttl: 24h", "ttl: 12h")).digest() != RULES.digest()


def test_match_describes_itself() -> None:
    """A match has a readable description for `explain`."""
    assert Match(model="m/*", metadata={"k": "v"}).describe() == "model~m/*, metadata.k=v"
