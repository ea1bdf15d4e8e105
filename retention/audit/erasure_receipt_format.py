"""Erasure receipts: the bundle a data subject, or a regulator, checks with the pinned public
key alone once the subject's erasure request is complete.

    {"erasure_receipt": 1, "erasure_id": "er_...", "subjects": [<digest>, ...],
     "requested": <proof of the erasure.requested record>,
     "completed": <proof of the erasure.completed record>,
     "records": [{"provider": ..., "response_id": ..., "outcome": ...}, ...],
     "receipts": [<deletion receipt>, ...],
     "withheld": [{"response_id": ..., "provider": ..., "hold": ...}, ...],
     "public_key": PEM}

A proof is a deletion receipt's shape (`receipt_format.py`: the record, a signed checkpoint of
its chain that covers it, the Merkle path between them) around the request's own records.
`records` is every record of the request with what became of it by completion (`deleted`,
`absent`, `failed` or `withheld`), by provider then response ID (code point order): the list
whose digest the completion's record signs (`records_sha256`, see `records_digest`). Each
element of `receipts` is a deletion receipt, one per record the list says `deleted` or
`absent` (same order), that `audit verify-receipt` also checks on its own. `subjects` and
`withheld` repeat what the signed records say (`erasure.requested`'s subject digests;
`erasure.completed`'s `withheld_records`), so that a reader sees them without digging.

The check (`check_erasure_receipt`) holds the bundle to what the pinned key signed:
- the file is its canonical JSON on one line and a newline, every proof verifies under the key
  and `public_key` is its PEM;
- both records name the bundle's `erasure_id`; `subjects` are the request's digests (64 hex
  each: no subject value has a place in a bundle) and `withheld` is exactly the completion's
  `withheld_records`, as many as its `withheld` count;
- `records` is in order, one entry per response, its digest is the completion's
  `records_sha256`, it holds as many records and as many of each outcome as the completion
  counts, and its `withheld` entries are the `withheld` list's records, in order;
- each receipt is of a record the list says `deleted` (a `response.deleted` record) or `absent`
  (a `response.absent`), one per response, and every such record of the list has its receipt.

So every deletion in a valid bundle is proven to be of the request by the signed list, whether
its own record names the request (`details.erasure_id`: deleted because of it) or not (already
gone when it came, perhaps under an earlier request of the same person, or released from a hold
and deleted at its own deadline). The list is the operator's, signed when the request
completed: the trail never holds who a record is about, so that the request found every record
of the subject rests on the subject index. `erasure_facts` says how many deletions name the
request. Pure: standard library and `cryptography` only.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        "records",
        "receipts",
        "withheld",
        "public_key",
    }
)
WITHHELD_KEYS = frozenset({"response_id", "provider", "hold"})
ENTRY_KEYS = frozenset({"provider", "response_id", "outcome"})
OUTCOMES = ("deleted", "absent", "failed", "withheld")  # of a record when its request completed
GONE = {
    Event.RESPONSE_DELETED.value: "deleted",
    Event.RESPONSE_ABSENT.value: "absent",
    Event.CONVERSATION_DELETED.value: "deleted",
}
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


def records_digest(records: Iterable[Mapping[str, str]]) -> str:
    """`records_sha256` of a request's records, in the order given (by provider, then response
    ID, when signed): lowercase hex SHA-256 of UTF-8 lines of provider, tab, response ID, tab,
    outcome, newline."""
    lines = "".join(f"{r['provider']}\t{r['response_id']}\t{r['outcome']}\n" for r in records)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def build_erasure_receipt(
    requested: Receipt,
    completed: Receipt,
    receipts: Iterable[Receipt],
    records: Iterable[Mapping[str, str]],
) -> Bundle:
    """The bundle of a completed request, from the proofs of its two records, the deletion
    receipts of its records and the list of its records with their outcomes (both put in order
    here)."""
    done = completed["record"]["details"]
    entries = [
        {"provider": r["provider"], "response_id": r["response_id"], "outcome": r["outcome"]}
        for r in records
    ]
    return {
        "erasure_receipt": ERASURE_RECEIPT_VERSION,
        "erasure_id": done["erasure_id"],
        "subjects": list(requested["record"]["details"]["subjects"]),
        "requested": requested,
        "completed": completed,
        "records": sorted(entries, key=_place),
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
        _records,
        _receipts,
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
    """What a valid bundle shows: the request, its counts, how many of the deletions name it
    (`linked`) and how many do not (`unlinked`: gone before it, or deleted at their own
    deadline; the signed list proves them the request's all the same), and the records that
    failed or were withheld."""
    requested, completed = bundle["requested"]["record"], bundle["completed"]["record"]
    details = completed["details"]
    linked = sum(_erasure_of(r["record"]) == bundle["erasure_id"] for r in bundle["receipts"])
    return {
        "erasure_id": bundle["erasure_id"],
        "subjects": bundle["subjects"],
        "requested_at": requested["ts"],
        "completed_at": completed["ts"],
        **{name: details[name] for name in COUNTS},
        "records_sha256": details["records_sha256"],
        "linked": linked,
        "unlinked": len(bundle["receipts"]) - linked,
        "failed_records": [
            {"response_id": e["response_id"], "provider": e["provider"]}
            for e in bundle["records"]
            if e["outcome"] == "failed"
        ],
        "withheld_records": bundle["withheld"],
        "key_fingerprint": bundle["completed"]["checkpoint"]["details"]["key_fingerprint"],
    }


def _proofs(bundle: Bundle) -> list[tuple[str, Receipt]]:
    """Every proof of a bundle, with the name a reason gives it."""
    receipts = [(f"receipts[{i}]", r) for i, r in enumerate(bundle["receipts"])]
    return [("requested", bundle["requested"]), ("completed", bundle["completed"]), *receipts]


def _place(record: Mapping[str, Any]) -> tuple[str, str]:
    """Where a record (or a list entry) sorts in a bundle: by provider, then response ID."""
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
    records = bundle["records"]
    if not isinstance(records, list) or not all(_is_entry(e) for e in records):
        return (
            "records must be a list of {provider, response_id, outcome}, outcome one of "
            f"{', '.join(OUTCOMES)}"
        )
    receipts = bundle["receipts"]
    if not isinstance(receipts, list) or not all(isinstance(r, dict) for r in receipts):
        return "receipts must be a list of deletion receipts"
    withheld = bundle["withheld"]
    if not isinstance(withheld, list) or not all(_is_withheld(w) for w in withheld):
        return "withheld must be a list of {response_id, provider, hold}"
    if bundle["public_key"] != public_pem(key):
        return "public_key is not the pinned key's PEM"
    return None


def _is_entry(item: object) -> bool:
    """Whether `item` is one entry of the records list: a provider and response ID that fit on
    a line of the digest, and an outcome."""
    if not isinstance(item, dict) or set(item) != ENTRY_KEYS:
        return False
    return item["outcome"] in OUTCOMES and all(
        isinstance(item[k], str) and item[k] and not {"\t", "\n"} & set(item[k])
        for k in ("provider", "response_id")
    )


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
    if not _is_digest(details.get("records_sha256")):
        return "completed: the record signs no records_sha256 (64 lowercase hex characters)"
    if details.get("withheld_records") != bundle["withheld"]:
        return "withheld is not the list the completion's record signs (withheld_records)"
    listed, counted = len(bundle["withheld"]), details["withheld"]
    if listed != counted:
        return f"withheld lists {listed} records, the completion's record counts {counted}"
    return None


def _records(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """The list of the request's records is the one the completion signs, in order, and agrees
    with its counts and its withheld list."""
    records = bundle["records"]
    for index in range(1, len(records)):
        place, previous = _place(records[index]), _place(records[index - 1])
        if place <= previous:
            what = "twice" if place == previous else "out of order (provider, then response ID)"
            return f"records[{index}]: {place[1]} is listed {what}"
    details = bundle["completed"]["record"]["details"]
    if records_digest(records) != details["records_sha256"]:
        return "records are not the list the completion's record signs (records_sha256)"
    have = Counter(e["outcome"] for e in records)
    for name in COUNTS:
        listed = len(records) if name == "matched" else have[name]
        if listed != details[name]:
            what = "records" if name == "matched" else name
            return (
                f"records list {listed} {what}, the completion's record counts "
                f"{details[name]} {name}"
            )
    held = [_place(w) for w in bundle["withheld"]]
    if held != [_place(e) for e in records if e["outcome"] == "withheld"]:
        return "withheld is not the records the list says withheld"
    return None


def _receipts(bundle: Bundle, key: Ed25519PublicKey) -> str | None:
    """Each receipt is a valid deletion receipt, in order, of a record the list says deleted
    (or absent) with a record of that event; every such record has exactly one."""
    outcomes = {_place(e): e["outcome"] for e in bundle["records"]}
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
        outcome, gone = outcomes.get(place), GONE[record["event"]]
        if outcome is None:
            return (
                f"{name}: {record['response_id']} ({record['provider']}) is not among the "
                "request's records"
            )
        if outcome != gone:
            return f"{name}: {record['response_id']} is {outcome} in the records, not {gone}"
        previous = place
    proven = {_place(r["record"]) for r in bundle["receipts"]}
    for index, entry in enumerate(bundle["records"]):
        if entry["outcome"] in GONE.values() and _place(entry) not in proven:
            return (
                f"records[{index}]: {entry['response_id']} is {entry['outcome']}, but no "
                "receipt proves it"
            )
    return None
