"""Deletion receipts: one deletion record, a signed checkpoint, and the Merkle path between them.

    {"receipt_version": 1, "record": <response.deleted or response.absent>,
     "leaf_index": seq - 1, "tree_size": n, "inclusion_proof": [hex, ...],
     "checkpoint": <audit.checkpoint with covers_seq = n >= seq, same chain>, "public_key": PEM}

With the pinned public key and nothing else, a receipt proves that the deletion is leaf
`leaf_index` of the tree of its chain's first `tree_size` records, whose root the checkpoint
signs. The size comes from the signed checkpoint, never from the receipt alone: an inclusion
proof does not authenticate the size it is checked against.

A receipt is written as canonical JSON on one line and a newline, and the check refuses any
other spelling (other key order, spacing, escapes, hex case, base64 padding bits), so that
changing any one byte of a receipt file makes it fail. Pure: standard library and
`cryptography` only; the audit trail's auditors import it without the database stack.
The same shape proves other records too (`check_receipt(..., events=...)`): an erasure
receipt (`erasure_receipt_format.py`) proves its request and completion records this way.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from retention.audit.checkpoint_message import signed_message
from retention.audit.hashchain import canonical, record_hash
from retention.audit.merkle import inclusion_proof, leaf_hash, root, verify_inclusion
from retention.audit.signatures import fingerprint, public_pem, verify_signature
from retention.core.vocabulary import GONE_EVENTS, Event

RECEIPT_VERSION = 1
KEYS = frozenset(
    {
        "receipt_version",
        "record",
        "leaf_index",
        "tree_size",
        "inclusion_proof",
        "checkpoint",
        "public_key",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")

Receipt = dict[str, Any]


def build_receipt(
    record: dict[str, Any],
    leaves: Sequence[bytes],
    checkpoint: dict[str, Any],
    public_key_pem: str,
) -> Receipt:
    """The receipt of `record` under `checkpoint` and leaves 1..n; ValueError if they disagree."""
    details = checkpoint["details"]
    index, size = record["seq"] - 1, details["covers_seq"]
    if checkpoint["chain"] != record["chain"]:
        raise ValueError(f"the checkpoint is of chain {checkpoint['chain']}, not {record['chain']}")
    if len(leaves) != size or not 0 <= index < size:
        raise ValueError(f"a checkpoint over {size} records cannot hold seq {record['seq']}")
    if leaves[index] != leaf_hash(record["hash"]):
        raise ValueError(f"seq {record['seq']}: the record's hash is not the leaf read for it")
    if root(leaves).hex() != details.get("root_hash"):
        raise ValueError(f"the records 1..{size} do not give the root the checkpoint signs")
    return {
        "receipt_version": RECEIPT_VERSION,
        "record": copy.deepcopy(record),
        "leaf_index": index,
        "tree_size": size,
        "inclusion_proof": [h.hex() for h in inclusion_proof(index, leaves)],
        "checkpoint": copy.deepcopy(checkpoint),
        "public_key": public_key_pem,
    }


def receipt_text(receipt: Receipt) -> str:
    """The receipt as its file holds it: canonical JSON on one line, then a newline."""
    return canonical(receipt) + "\n"


def check_receipt(
    text: str, key: Ed25519PublicKey, *, events: Sequence[str] = GONE_EVENTS
) -> str | None:
    """None when `text` is a valid receipt under the pinned `key`, else what failed (one line).
    `events` are the records it may prove (a deletion's by default; an erasure receipt also
    proves its `erasure.requested` and `erasure.completed` records this way)."""
    try:
        receipt = json.loads(text)
    except (ValueError, RecursionError):
        return "the receipt is not JSON"
    try:
        canonical_form = receipt_text(receipt) if isinstance(receipt, dict) else None
    except (ValueError, RecursionError):
        canonical_form = None
    if text != canonical_form:
        return "the receipt is not one line of canonical JSON and a newline"
    steps: tuple[Callable[[Receipt, Ed25519PublicKey], str | None], ...] = (
        _shape,
        partial(_record, events=tuple(events)),
        _checkpoint,
        _signature,
        _inclusion,
    )
    for step in steps:
        reason = step(receipt, key)
        if reason is not None:
            return reason
    return None


def witnessed(text: str, kept: list[dict[str, Any]]) -> str | None:
    """None when a (valid) receipt's checkpoint is one of `kept` (a witness's or the holder's
    own checkpoints), unchanged; else why not. Against the real key, only this catches a
    receipt from a history the operator rewrote and signed again."""
    checkpoint = json.loads(text)["checkpoint"]
    where = (checkpoint["chain"], checkpoint["seq"], checkpoint["hash"])
    if any((k.get("chain"), k.get("seq"), k.get("hash")) == where for k in kept):
        return None
    return "its checkpoint is not among the kept or witnessed checkpoints"


def _is_int(value: object) -> bool:
    """Whether `value` is an int (bools are not)."""
    return type(value) is int


def _is_hex64(value: object) -> bool:
    """Whether `value` is 64 lowercase hex characters."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _are_str(*values: object) -> bool:
    """Whether every value is a string."""
    return all(isinstance(v, str) for v in values)


def _shape(receipt: Receipt, key: Ed25519PublicKey) -> str | None:
    """Every field present with the type the later steps rely on."""
    if set(receipt) != KEYS:
        return f"the receipt's fields are not {', '.join(sorted(KEYS))}"
    if not _is_int(receipt["receipt_version"]) or receipt["receipt_version"] != RECEIPT_VERSION:
        return f"not a version {RECEIPT_VERSION} receipt"
    if not (_is_int(receipt["leaf_index"]) and _is_int(receipt["tree_size"])):
        return "leaf_index and tree_size must be integers"
    proof = receipt["inclusion_proof"]
    if not isinstance(proof, list) or not all(_is_hex64(h) for h in proof):
        return "inclusion_proof must be a list of 64 lowercase hex characters each"
    record, checkpoint = receipt["record"], receipt["checkpoint"]
    for name, value in (("record", record), ("checkpoint", checkpoint)):
        if not isinstance(value, dict) or not _is_int(value.get("seq")):
            return f"the {name} is not an audit record"
        if not (_is_hex64(value.get("hash")) and _are_str(value.get("chain"), value.get("ts"))):
            return f"the {name} is not an audit record"
    details = checkpoint.get("details")
    if not isinstance(details, dict) or not _is_int(details.get("covers_seq")):
        return "the checkpoint has no covers_seq"
    if not _is_hex64(details.get("root_hash")):
        return "the checkpoint signs no Merkle root (root_hash)"
    if not isinstance(details.get("signature"), str):
        return "the checkpoint has no signature"
    return None


def _recomputes(record: dict[str, Any]) -> bool:
    """Whether a record's `hash` is the hash of the rest of it."""
    claimed: object = record["hash"]
    return record_hash({k: v for k, v in record.items() if k != "hash"}) == claimed


def _record(
    receipt: Receipt, key: Ed25519PublicKey, events: tuple[str, ...] = GONE_EVENTS
) -> str | None:
    """The record is intact, is one of `events` (a deletion), and sits where the receipt says."""
    record = receipt["record"]
    if not _recomputes(record):
        return "the record's hash does not match its content"
    if record.get("event") not in events:
        what = "a deletion" if events == GONE_EVENTS else " or ".join(repr(str(e)) for e in events)
        return f"the record is a {record.get('event')!r} event, not {what}"
    if record["event"] in GONE_EVENTS and not isinstance(record.get("response_id"), str):
        return "the record names no response_id"
    if receipt["leaf_index"] != record["seq"] - 1:
        return "leaf_index is not the record's seq - 1"
    return None


def _checkpoint(receipt: Receipt, key: Ed25519PublicKey) -> str | None:
    """The checkpoint is intact, of the record's chain, covers it, and names the pinned key."""
    checkpoint, record = receipt["checkpoint"], receipt["record"]
    details = checkpoint["details"]
    size = receipt["tree_size"]
    if not _recomputes(checkpoint):
        return "the checkpoint's hash does not match its content"
    if checkpoint.get("event") != Event.AUDIT_CHECKPOINT:
        return f"the checkpoint is a {checkpoint.get('event')!r} event"
    if checkpoint["chain"] != record["chain"]:
        return "the checkpoint is of another chain than the record"
    if not size == details["covers_seq"] == checkpoint["seq"] - 1:
        return "tree_size is not the number of records the checkpoint signs (covers_seq)"
    if not receipt["leaf_index"] < size:
        return "the checkpoint does not cover the record"
    if details.get("key_fingerprint") != fingerprint(key):
        return "the checkpoint names another signing key than the pinned one"
    if receipt["public_key"] != public_pem(key):
        return "public_key is not the pinned key's PEM"
    return None


def _signature(receipt: Receipt, key: Ed25519PublicKey) -> str | None:
    """The pinned key signed the checkpoint, in canonical base64."""
    checkpoint = receipt["checkpoint"]
    signature = checkpoint["details"]["signature"]
    try:
        canonical_b64 = base64.b64encode(base64.b64decode(signature, validate=True)).decode()
    except (binascii.Error, ValueError):
        return "the checkpoint's signature is not base64"
    if canonical_b64 != signature:
        return "the checkpoint's signature is not canonical base64"
    message = signed_message(checkpoint["details"], chain=checkpoint["chain"], ts=checkpoint["ts"])
    if not verify_signature(key, signature, message):
        return "the checkpoint's signature does not verify under the pinned key"
    return None


def _inclusion(receipt: Receipt, key: Ed25519PublicKey) -> str | None:
    """The proof puts the record's leaf at leaf_index of the signed tree."""
    included = verify_inclusion(
        receipt["leaf_index"],
        receipt["tree_size"],
        leaf_hash(receipt["record"]["hash"]),
        [bytes.fromhex(h) for h in receipt["inclusion_proof"]],
        bytes.fromhex(receipt["checkpoint"]["details"]["root_hash"]),
    )
    return None if included else "the inclusion proof does not lead to the signed root"
