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
