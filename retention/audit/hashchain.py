"""The audit hash chain, as docs/evidence.md defines it. Pure: no I/O.

    hash = sha256_hex(json.dumps(record_without_hash, sort_keys=True,
                                 separators=(",", ":"), ensure_ascii=False).encode())

`prev_hash` is the previous record's `hash` in the same chain, 64 zeros for seq 1.
Records hold only strings, integers, booleans, null, lists and objects: no floats, so that
any language re-serialises them to the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64

FIELDS = (
    "chain",
    "seq",
    "ts",
    "event",
    "response_id",
    "provider",
    "account",
    "policy",
    "deadline",
    "http_status",
    "provider_request_id",
    "attempt",
    "error",
    "actor",
    "details",
)


# json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False), built once
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_BLANK = dict.fromkeys(FIELDS)
_AFTER_HASH = tuple(sorted(k for k in (*FIELDS, "prev_hash") if k > "hash"))


def canonical(record: dict[str, Any]) -> str:
    """The canonical JSON text of a record, the bytes its hash covers."""
    return _ENCODER.encode(record)


def record_hash(record_without_hash: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a record without its `hash` field."""
    return hashlib.sha256(canonical(record_without_hash).encode()).hexdigest()


def seal(body: dict[str, Any], *, chain: str, seq: int, prev_hash: str) -> dict[str, Any]:
    """Complete an event body into a chained record with `prev_hash` and `hash`."""
    return seal_line(body, chain=chain, seq=seq, prev_hash=prev_hash)[0]


def seal_line(
    body: dict[str, Any], *, chain: str, seq: int, prev_hash: str
) -> tuple[dict[str, Any], str]:
    """The sealed record and its canonical JSON line, serialised once.

    The line equals `canonical(record)`: keys are sorted, so `hash` sits just before the
    top-level `http_status`, and as every key after it holds a scalar (and a JSON string
    cannot contain an unescaped quote), the last `,"http_status":` is the top-level one."""
    record = {**_BLANK, **body}  # every field, None where the body has none
    if len(record) != len(_BLANK):  # a key that is not a field: left out
        record = {name: record[name] for name in FIELDS}
    record.update(chain=chain, seq=seq, prev_hash=prev_hash)
    if record["details"] is None:
        record["details"] = {}
    _reject_floats(record)
    text = canonical(record)
    digest = hashlib.sha256(text.encode()).hexdigest()
    record["hash"] = digest
    for key in _AFTER_HASH:
        if isinstance(record[key], dict | list):
            return record, canonical(record)  # not from us; no shortcut
    cut = text.rindex(',"http_status":') + 1
    return record, f'{text[:cut]}"hash":"{digest}",{text[cut:]}'


def _reject_floats(value: Any) -> None:
    """Floats do not re-serialise identically across languages; the trail never holds one."""
    kind = type(value)
    if kind is float:
        raise TypeError("audit records hold no floats")
    if kind is dict:
        for item in value.values():
            if type(item) not in _SCALARS:
                _reject_floats(item)
    elif kind is list:
        for item in value:
            _reject_floats(item)


_SCALARS = frozenset({str, int, bool, type(None)})
