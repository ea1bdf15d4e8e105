"""Deadlines and the plan of what to delete: pure decisions with `now` passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from retention.core.policies import Hold, Policy, PolicySet
from retention.core.records import ResponseFacts
from retention.core.times import require_aware
from retention.core.vocabulary import Basis, State


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policies say about one response: its policy, deadline, and any hold."""

    policy: str
    deadline: datetime
    basis: str  # "created_at" or "first_seen": where the TTL counts from
    hold: str | None = None

    @property
    def state(self) -> State:
        """The open ledger state this decision puts a response in."""
        return State.HELD if self.hold else State.PENDING

    def is_due(self, now: datetime) -> bool:
        """Whether the response must be deleted at `now` (never before its deadline)."""
        return self.hold is None and self.deadline <= require_aware(now)


def deadline(facts: ResponseFacts, policy: Policy) -> tuple[datetime, str]:
    """When `facts` must be gone under `policy`, and what the TTL counted from."""
    if policy.ttl_from == Basis.LAST_ACTIVITY and facts.last_activity_at is not None:
        return facts.last_activity_at + policy.ttl, Basis.LAST_ACTIVITY
    if facts.created_at is not None:
        return facts.created_at + policy.ttl, "created_at"
    return facts.first_seen_at + policy.ttl, "first_seen"


def decide(
    facts: ResponseFacts,
    policies: PolicySet,
    extra_holds: tuple[Hold, ...] = (),
    *,
    chain_floor: datetime | None = None,
) -> Decision:
    """Apply `policies` (first match wins; holds override) to one response.

    `chain_floor` is the latest own deadline in the response's conversation chain; under a
    policy that keeps chains intact the response lives at least that long."""
    policy = policies.policy_for(facts)
    when, basis = deadline(facts, policy)
    if policy.keep_chains_intact and chain_floor is not None and chain_floor > when:
        when, basis = chain_floor, "chain"
    hold = policies.hold_for(facts, extra_holds)
    return Decision(
        policy=policy.name, deadline=when, basis=basis, hold=hold.name if hold else None
    )


def latest_chain_deadline(members: list[ResponseFacts], policies: PolicySet) -> datetime | None:
    """The latest own deadline among a chain's members (its newest turn's, as a rule)."""
    return max((decide(m, policies).deadline for m in members), default=None)


@dataclass(frozen=True, slots=True)
class PlannedDeletion:
    """One response the plan says to delete now, and why."""

    facts: ResponseFacts
    decision: Decision


def plan(
    records: list[ResponseFacts],
    policies: PolicySet,
    now: datetime,
    extra_holds: tuple[Hold, ...] = (),
    floors: dict[tuple[str, str], datetime] | None = None,
) -> list[PlannedDeletion]:
    """The responses among `records` that are due at `now`, oldest deadline first;
    `floors` gives each conversation chain, by (provider, root), its latest own deadline."""
    planned = []
    for facts in records:
        floor = (floors or {}).get((facts.provider, facts.chain_root or ""))
        decision = decide(facts, policies, extra_holds, chain_floor=floor)
        if decision.is_due(now):
            planned.append(PlannedDeletion(facts, decision))
    return sorted(planned, key=lambda p: (p.decision.deadline, p.facts.response_id))
