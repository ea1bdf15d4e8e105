"""Erasure receipts: the bundle a data subject, or a regulator, checks with the pinned public
key alone once the subject's erasure request is complete.

    {"erasure_receipt": 1, "erasure_id": "er_...", "subjects": [<digest>, ...],
     "requested": <proof of the erasure.requested record>,
     "completed": <proof of the erasure.completed record>,
     "receipts": [<deletion receipt>, ...],
     "withheld": [{"response_id": ..., "provider": ..., "hold": ...}, ...],
     "public_key": PEM}

A proof is a deletion receipt's shape (`receipt_format.py`: the record, a signed checkpoint of
its chain that covers it, the Merkle path between them) around the request's own records, and
each element of `receipts` is a deletion receipt, one per record of the request deleted or
absent when it completed (in provider, then response ID order), that `audit verify-receipt`
also checks on its own. `subjects` and `withheld` repeat what the signed records say
(`erasure.requested`'s subject digests; `erasure.completed`'s `withheld_records`), so that a
reader sees them without digging.

The check (`check_erasure_receipt`) holds the bundle to what the pinned key signed:
- the file is its canonical JSON on one line and a newline, every proof verifies under the key
  and `public_key` is its PEM;
- both records name the bundle's `erasure_id`; `subjects` are the request's digests (64 hex
  each: no subject value has a place in a bundle) and `withheld` is exactly the completion's
  `withheld_records`, as many as its `withheld` count;
- the receipts are as many `response.deleted` and `response.absent` records as the completion
  counts `deleted` and `absent`, one per response (none of them withheld).

Which receipts belong to the request: a deletion made because of it names it
(`details.erasure_id`), in a record the key signed, so its link is proven. A record that was
already gone when the request came (often under an earlier request of the same person) or
that was released from a hold and deleted at its own deadline names another request or none:
its number is signed (the completion's counts), but that it is the subject's rests on the
operator's listing, since the trail never holds who a record is about. `erasure_facts` says how
many of each a valid bundle holds. Pure: standard library and `cryptography` only.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from retention.audit.hashchain import canonical
from retention.audit.merkle import EMPTY_ROOT, leaf_hash, node_hash
from retention.audit.receipt_format import (
    RECEIPT_VERSION,
    Receipt,
    check_receipt,
)
from retention.audit.signatures import public_pem
from retention.core.vocabulary import Event

ERASURE_RECEIPT_VERSION = 1
KEYS = frozenset(
    {
        "erasure_receipt",
        "erasure_id",
        "subjects",
        "requested",
        "completed",
        "receipts",
        "withheld",
        "public_key",
    }
)
WITHHELD_KEYS = frozenset({"response_id", "provider", "hold"})
COUNTS = ("matched", "deleted", "absent", "failed", "pending", "withheld")

Bundle = dict[str, Any]


class Tree:
    """The levels of an RFC 9162 tree, hashed once, to give many inclusion proofs.

    Built bottom up, an odd last node carried up unchanged, which is MTH's tree: the audit
    path of a leaf is its sibling at each level that has one, leaf end first."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            upper = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) & 1:
                upper.append(level[-1])
            self.levels.append(upper)

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self.levels[0])

    def leaf(self, index: int) -> bytes:
        """The leaf at `index`."""
        return self.levels[0][index]

    def root(self) -> bytes:
        """MTH of the leaves (EMPTY_ROOT for none)."""
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def path(self, index: int) -> list[bytes]:
        """PATH(index, D[size]), leaf end first."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} outside a tree of {self.size} leaves")
        path = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index >>= 1
        return path


def build_proof(
    record: dict[str, Any], tree: Tree, checkpoint: dict[str, Any], public_key_pem: str
) -> Receipt:
    """The receipt-shaped proof of `record` under `checkpoint`, whose chain's first records are
    the leaves of `tree`; ValueError if they disagree (as `receipt_format.build_receipt`)."""
    details = checkpoint["details"]
    index, size = record["seq"] - 1, details["covers_seq"]
    if checkpoint["chain"] != record["chain"]:
        raise ValueError(f"the checkpoint is of chain {checkpoint['chain']}, not {record['chain']}")
    if tree.size != size or not 0 <= index < size:
        raise ValueError(f"a checkpoint over {size} records cannot hold seq {record['seq']}")
    if tree.leaf(index) != leaf_hash(record["hash"]):
        raise ValueError(f"seq {record['seq']}: the record's hash is not the leaf read for it")
    if tree.root().hex() != details.get("root_hash"):
        raise ValueError(f"the records 1..{size} do not give the root the checkpoint signs")
    return {
        "receipt_version": RECEIPT_VERSION,
        "record": copy.deepcopy(record),
        "leaf_index": index,
        "tree_size": size,
        "inclusion_proof": [h.hex() for h in tree.path(index)],
        "checkpoint": copy.deepcopy(checkpoint),
        "public_key": public_key_pem,
    }


def build_erasure_receipt(
    requested: Receipt, completed: Receipt, receipts: Iterable[Receipt]
) -> Bundle:
    """The bundle of a completed request, from the proofs of its two records and the deletion
    receipts of its records (put in order here)."""
    done = completed["record"]["details"]
    return {
        "erasure_receipt": ERASURE_RECEIPT_VERSION,
        "erasure_id": done["erasure_id"],
        "subjects": list(requested["record"]["details"]["subjects"]),
        "requested": requested,
        "completed": completed,
        "receipts": sorted(receipts, key=lambda r: _place(r["record"])),
        "withheld": copy.deepcopy(done.get("withheld_records", [])),
        "public_key": requested["public_key"],
    }


def erasure_receipt_text(bundle: Bundle) -> str:
    """The bundle as its file holds it: canonical JSON on one line, then a newline."""
    return canonical(bundle) + "\n"


def check_erasure_receipt(text: str, key: Ed25519PublicKey) -> str | None:
    """None when `text` is a valid erasure receipt under the pinned `key`, else the first thing
    that failed (one line)."""
    try:
        bundle = json.loads(text)
    except (ValueError, RecursionError):
        return "the erasure receipt is not JSON"
    try:
        canonical_form = erasure_receipt_text(bundle) if isinstance(bundle, dict) else None
    except (ValueError, RecursionError):
        canonical_form = None
    if text != canonical_form:
        return "the erasure receipt is not one line of canonical JSON and a newline"
    steps: tuple[Callable[[Bundle, Ed25519PublicKey], str | None], ...] = (
        _shape,
        _requested,
        _completed,
        _receipts,
        _counts,
    )
    for step in steps:
        reason = step(bundle, key)
        if reason is not None:
            return reason
    return None


def erasure_witnessed(text: str, kept: list[dict[str, Any]]) -> str | None:
    """None when every checkpoint of a (valid) bundle is one of `kept` (a witness's or the
    holder's own checkpoints), unchanged; else which is not."""
    bundle = json.loads(text)
    have = {(k.get("chain"), k.get("seq"), k.get("hash")) for k in kept}
    for name, proof in _proofs(bundle):
        checkpoint = proof["checkpoint"]
        if (checkpoint["chain"], checkpoint["seq"], checkpoint["hash"]) not in have:
            return f"{name}: its checkpoint is not among the kept or witnessed checkpoints"
    return None


def erasure_facts(bundle: Bundle) -> dict[str, Any]:
    """What a valid bundle shows: the request, its counts, and how many of the deletions name
    it (`linked`) or were listed by the operator (`listed`: gone before the request, or
    deleted at their own deadline)."""
    requested, completed = bundle["requested"]["record"], bundle["completed"]["record"]
    details = completed["details"]
    linked = sum(_erasure_of(r["record"]) == bundle["erasure_id"] for r in bundle["receipts"])
    return {
        "erasure_id": bundle["erasure_id"],
        "subjects": bundle["subjects"],
        "requested_at": requested["ts"],
        "completed_at": completed["ts"],
        **{name: details[name] for name in COUNTS},
        "linked": linked,
        "listed": len(bundle["receipts"]) - linked,
        "withheld_records": bundle["withheld"],
        "key_fingerprint": bundle["completed"]["checkpoint"]["details"]["key_fingerprint"],
    }


def _proofs(bundle: Bundle) -> list[tuple[str, Receipt]]:
    """Every proof of a bundle, with the name a reason gives it."""
    receipts = [(f"receipts[{i}]", r) for i, r in enumerate(bundle["receipts"])]
    return [("requested", bundle["requested"]), ("completed", bundle["completed"]), *receipts]


def _place(record: dict[str, Any]) -> tuple[str, str]:
    """Where a deletion record sorts in a bundle: by provider, then response ID."""
    return (record["provider"], record["response_id"])


def _erasure_of(record: dict[str, Any]) -> object:
    """The erasure request a deletion record names, if any."""
    details = record.get("details")
    return details.get("erasure_id") if isinstance(details, dict) else None


def _is_int(value: object) -> bool:
    """Whether `value` is an int (bools are not)."""
    return type(value) is int


def _is_digest(value: object) -> bool:
    """Whether `value` is a subject digest: 64 lowercase hex characters."""
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _shape(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """Every field present with the type the later steps rely on, and the pinned key's PEM."""
    if set(bundle) != KEYS:
        return f"the erasure receipt's fields are not {', '.join(sorted(KEYS))}"
    version = bundle["erasure_receipt"]
    if not _is_int(version) or version != ERASURE_RECEIPT_VERSION:
        return f"not a version {ERASURE_RECEIPT_VERSION} erasure receipt"
    if not isinstance(bundle["erasure_id"], str) or not bundle["erasure_id"]:
        return "erasure_id must be a string"
    subjects = bundle["subjects"]
    if not isinstance(subjects, list) or not all(_is_digest(s) for s in subjects):
        return "subjects must be a list of digests (64 lowercase hex characters each)"
    for name in ("requested", "completed"):
        if not isinstance(bundle[name], dict):
            return f"{name} is not a proof"
    receipts = bundle["receipts"]
    if not isinstance(receipts, list) or not all(isinstance(r, dict) for r in receipts):
        return "receipts must be a list of deletion receipts"
    withheld = bundle["withheld"]
    if not isinstance(withheld, list) or not all(_is_withheld(w) for w in withheld):
        return "withheld must be a list of {response_id, provider, hold}"
    if bundle["public_key"] != public_pem(key):
        return "public_key is not the pinned key's PEM"
    return None


def _is_withheld(item: object) -> bool:
    """Whether `item` is one withheld record: its ID, its provider, and the hold's name."""
    if not isinstance(item, dict) or set(item) != WITHHELD_KEYS:
        return False
    hold = item["hold"]
    return (
        isinstance(item["response_id"], str)
        and isinstance(item["provider"], str)
        and (hold is None or isinstance(hold, str))
    )


def _proven(name: str, proof: Receipt, key: Ed25519PublicKey, event: Event) -> str | None:
    """The proof verifies, is of `event`, and its record has details naming an erasure."""
    reason = check_receipt(canonical(proof) + "\n", key, events=(event,))
    if reason is not None:
        return f"{name}: {reason}"
    details = proof["record"].get("details")
    if not isinstance(details, dict) or not isinstance(details.get("erasure_id"), str):
        return f"{name}: the record names no erasure_id"
    return None


def _requested(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """The request's record is proven, is this request's, and gives the bundle's subjects."""
    reason = _proven("requested", bundle["requested"], key, Event.ERASURE_REQUESTED)
    if reason is not None:
        return reason
    details = bundle["requested"]["record"]["details"]
    if details["erasure_id"] != bundle["erasure_id"]:
        return f"requested: the record is of erasure {details['erasure_id']}, not this one"
    if details.get("subjects") != bundle["subjects"]:
        return "subjects are not the digests the request's record names"
    return None


def _completed(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """The completion's record is proven, is this request's, and signs the withheld list."""
    reason = _proven("completed", bundle["completed"], key, Event.ERASURE_COMPLETED)
    if reason is not None:
        return reason
    details = bundle["completed"]["record"]["details"]
    if details["erasure_id"] != bundle["erasure_id"]:
        return f"completed: the record is of erasure {details['erasure_id']}, not this one"
    if not all(_is_int(details.get(name)) for name in COUNTS):
        return f"completed: the record does not count {', '.join(COUNTS)}"
    if details.get("withheld_records") != bundle["withheld"]:
        return "withheld is not the list the completion's record signs (withheld_records)"
    listed, counted = len(bundle["withheld"]), details["withheld"]
    if listed != counted:
        return f"withheld lists {listed} records, the completion's record counts {counted}"
    return None


def _receipts(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """Each receipt is a valid deletion receipt, one per response, in order, none withheld."""
    withheld = {(w["provider"], w["response_id"]) for w in bundle["withheld"]}
    previous: tuple[str, str] | None = None
    for index, receipt in enumerate(bundle["receipts"]):
        name = f"receipts[{index}]"
        reason = check_receipt(canonical(receipt) + "\n", key)
        if reason is not None:
            return f"{name}: {reason}"
        record = receipt["record"]
        if not isinstance(record.get("provider"), str):
            return f"{name}: the record names no provider"
        place = _place(record)
        if previous is not None and place <= previous:
            what = "twice" if place == previous else "out of order (provider, then response ID)"
            return f"{name}: {record['response_id']} is listed {what}"
        if place in withheld:
            return f"{name}: {record['response_id']} is also listed as withheld"
        previous = place
    return None


def _counts(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """As many deletions and absences as the completion's record counts."""
    details = bundle["completed"]["record"]["details"]
    events = [r["record"]["event"] for r in bundle["receipts"]]
    for name, event in (("deleted", Event.RESPONSE_DELETED), ("absent", Event.RESPONSE_ABSENT)):
        have = events.count(event)
        if have != details[name]:
            return (
                f"the receipts hold {have} {event} records, the completion counts "
                f"{details[name]} {name}"
            )
    return None
