"""Data subjects: the people whose metadata values (`user_id=U`) the ledger must never keep.

A record's subject pairs are the `KEY=VALUE` pairs of its metadata whose key is one of
`erasure.subject_keys`. The ledger keeps, for each, `HMAC-SHA256(erasure key, "KEY=VALUE")` in
lowercase hex (docs/formats.md), and writes the value itself nowhere: in a record's stored
metadata it is replaced by `hmac-sha256:` and that digest. Pure: the standard library only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import replace

from retention.core.policies import Match, PolicySet

PSEUDONYM = "hmac-sha256:"  # how a subject value reads in a record's stored metadata
MAX_VALUE = 256  # characters of one subject value in an erasure request


def subject_digest(key: bytes, name: str, value: str) -> str:
    """`HMAC-SHA256(key, "NAME=VALUE")` as 64 lowercase hex digits."""
    return hmac.new(key, f"{name}={value}".encode(), hashlib.sha256).hexdigest()


def pseudonymised(
    metadata: Mapping[str, str], key: bytes, keys: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The metadata as the ledger stores it (each subject value replaced by its digest), and
    the digests of its subject pairs. A value already in the stored form keeps its digest."""
    stored = dict(metadata)
    digests = []
    for name in keys:
        value = metadata.get(name)
        if not value:
            continue
        if value.startswith(PSEUDONYM) and _is_digest(value[len(PSEUDONYM) :]):
            digest = value[len(PSEUDONYM) :]
        else:
            digest = subject_digest(key, name, value)
        stored[name] = PSEUDONYM + digest
        digests.append(digest)
    return stored, digests


def _is_digest(text: str) -> bool:
    """Whether `text` is 64 lowercase hex digits."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def matches_subjects(policies: PolicySet, keys: Iterable[str]) -> bool:
    """Whether a policy or hold of `policies` matches metadata by a subject key."""
    names = set(keys)
    return any(names & set(match.metadata) for match in _matches(policies))


def pseudonymise_policies(policies: PolicySet, key: bytes, keys: Iterable[str]) -> PolicySet:
    """`policies` as the ledger applies them: where a match names a subject key, its value is
    the digest the ledger keeps (so a hold on one person's responses keeps holding them)."""
    names = tuple(keys)

    def match(m: Match) -> Match:
        stored, _ = pseudonymised(m.metadata, key, names)
        return replace(m, metadata=stored)

    return replace(
        policies,
        default=replace(policies.default, match=match(policies.default.match)),
        policies=tuple(replace(p, match=match(p.match)) for p in policies.policies),
        holds=tuple(
            replace(h, match=match(h.match) if h.match is not None else None)
            for h in policies.holds
        ),
    )


def _matches(policies: PolicySet) -> list[Match]:
    """Every match of the policies and holds."""
    found = [policies.default.match, *(p.match for p in policies.policies)]
    return found + [h.match for h in policies.holds if h.match is not None]
