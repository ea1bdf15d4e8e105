"""Retention policies and legal holds as frozen values, and which one applies to a response."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase

from retention.core.records import ResponseFacts
from retention.core.vocabulary import Basis


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions that must all hold; an empty Match matches everything."""

    provider: str | None = None
    account: str | None = None
    model: str | None = None  # a glob: accounts/fireworks/models/*
    metadata: Mapping[str, str] = field(default_factory=dict)
    object: str | None = None  # `response` or `conversation` (ObjectKind); None: either

    def matches(self, facts: ResponseFacts) -> bool:
        """Whether `facts` satisfies every condition."""
        if self.object is not None and facts.object != self.object:
            return False
        if self.provider is not None and facts.provider != self.provider:
            return False
        if self.account is not None and facts.account != self.account:
            return False
        if self.model is not None and not fnmatchcase(facts.model or "", self.model):
            return False
        return all(facts.metadata.get(k) == v for k, v in self.metadata.items())

    def describe(self) -> str:
        """A short human description: `metadata.data_class=pii, model~accounts/*`."""
        parts = [
            f"{k}={v}"
            for k, v in (
                ("object", self.object),
                ("provider", self.provider),
                ("account", self.account),
            )
            if v is not None
        ]
        if self.model is not None:
            parts.append(f"model~{self.model}")
        parts += [f"metadata.{k}={v}" for k, v in sorted(self.metadata.items())]
        return ", ".join(parts) or "everything"


@dataclass(frozen=True, slots=True)
class Policy:
    """A named TTL for the responses its match selects."""

    name: str
    ttl: timedelta
    match: Match = field(default_factory=Match)
    line: int | None = None
    keep_chains_intact: bool = False  # a conversation lives as long as its newest turn
    # what the TTL counts from: `created_at` (or first seen), or a conversation's
    # `last_activity` (Basis.LAST_ACTIVITY; only for policies matching conversations)
    ttl_from: str = Basis.CREATED_AT


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold: listed IDs, and responses its match selects, are never deleted."""

    name: str
    ids: frozenset[str] = frozenset()
    match: Match | None = None
    placed: bool = False  # placed in the ledger (`retention hold add`), not in the policies file

    def covers(self, facts: ResponseFacts) -> bool:
        """Whether this hold protects `facts`."""
        if facts.response_id in self.ids:
            return True
        return self.match is not None and self.match.matches(facts)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The whole policies file: ordered policies (first match wins), a default, holds."""

    default: Policy
    policies: tuple[Policy, ...] = ()
    holds: tuple[Hold, ...] = ()
    source: str = "<memory>"

    def policy_for(self, facts: ResponseFacts) -> Policy:
        """The first policy whose match selects `facts`, else the default."""
        for policy in self.policies:
            if policy.match.matches(facts):
                return policy
        return self.default

    def hold_for(self, facts: ResponseFacts, extra: tuple[Hold, ...] = ()) -> Hold | None:
        """The first hold that protects `facts`, if any."""
        for hold in (*self.holds, *extra):
            if hold.covers(facts):
                return hold
        return None

    @property
    def keeps_chains(self) -> bool:
        """Whether any policy keeps conversation chains intact."""
        return any(p.keep_chains_intact for p in (*self.policies, self.default))

    @property
    def names(self) -> tuple[str, ...]:
        """Policy names in order, the default last."""
        return (*(p.name for p in self.policies), self.default.name)

    def digest(self) -> str:
        """A stable SHA-256 of the policies' meaning (not of the file's bytes or comments)."""
        doc = {
            "default": _policy_doc(self.default),
            "policies": [_policy_doc(p) for p in self.policies],
            "holds": [
                {
                    "name": h.name,
                    "ids": sorted(h.ids),
                    "match": _match_doc(h.match) if h.match else None,
                }
                for h in self.holds
            ],
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _policy_doc(policy: Policy) -> dict[str, object]:
    """The meaningful fields of a policy, for the digest."""
    doc: dict[str, object] = {
        "name": policy.name,
        "ttl": policy.ttl.total_seconds(),
        "match": _match_doc(policy.match),
        "keep_chains_intact": policy.keep_chains_intact,
    }
    if policy.ttl_from != Basis.CREATED_AT:  # absent when unset: older digests stay as they were
        doc["ttl_from"] = policy.ttl_from
    return doc


def _match_doc(match: Match) -> dict[str, object]:
    """The fields of a match, for the digest."""
    doc: dict[str, object] = {
        "provider": match.provider,
        "account": match.account,
        "model": match.model,
        "metadata": dict(match.metadata),
    }
    if match.object is not None:  # absent when unset: older digests stay as they were
        doc["object"] = match.object
    return doc
