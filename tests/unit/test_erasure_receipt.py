"""Erasure receipts: a bundle built from a signed trail verifies with the public key alone; a
changed withheld list, a dropped receipt, a changed count, a proof from another request or
another key, and junk all fail with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.erasure_receipt_format import (
    Tree,
    build_erasure_receipt,
    build_proof,
    check_erasure_receipt,
    erasure_facts,
    erasure_receipt_text,
    erasure_witnessed,
)
from retention.audit.hashchain import GENESIS, seal
from retention.audit.merkle import EMPTY_ROOT, inclusion_proof, leaf_hash, root
from retention.audit.receipt_format import build_receipt, check_receipt, receipt_text
from retention.audit.signatures import public_pem
from retention.evidence.signing_key import Signer
from tests.forgery import checkpoint_details, rehash, stamp

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)  # pure code: the trail's times are the test's own
REAL = Signer(Ed25519PrivateKey.generate())
OTHER = Signer(Ed25519PrivateKey.generate())
E1, E2 = "er_" + "1" * 20, "er_" + "2" * 20
ALICE, BOB = "a" * 64, "b" * 64
HELD = {"response_id": "a_held", "provider": "fireworks", "hold": "case-2026-113"}

Record = dict[str, Any]


def _deleted(rid: str, erasure_id: str | None, event: str = "response.deleted") -> Record:
    """A terminal outcome's body, naming the request that made it due when one did."""
    details: dict[str, Any] = {"deadline_basis": "erasure", "lag_s": 0}
    if erasure_id:
        details["erasure_id"] = erasure_id
    return {"event": event, "response_id": rid, "provider": "fireworks", "details": details}


def _requested(erasure_id: str, subject: str) -> Record:
    """An `erasure.requested` body."""
    details = {"erasure_id": erasure_id, "subjects": [subject], "reason": "asked", "ticket": None}
    return {"event": "erasure.requested", "details": {**details, "matched": 4, "due": 2}}


def _completed(erasure_id: str, deleted: int, absent: int, withheld: list[Record]) -> Record:
    """An `erasure.completed` body with its counts and withheld list."""
    counts = {"deleted": deleted, "absent": absent, "failed": 0, "pending": 0}
    details = {"erasure_id": erasure_id, **counts, "withheld": len(withheld)}
    matched = deleted + absent + len(withheld)
    return {
        "event": "erasure.completed",
        "details": {**details, "matched": matched, "withheld_records": withheld},
    }


def _trail(signer: Signer = REAL, withheld: tuple[Record, ...] = (HELD,)) -> list[Record]:
    """Alice's record gone before her request (E1), two deleted and one absent for it, one
    withheld; Bob's request (E2) meanwhile; a signed checkpoint after each part."""
    chain = "main"
    bodies: list[Record | None] = [
        _deleted("a_old", None),
        None,
        _requested(E1, ALICE),
        _requested(E2, BOB),
        _deleted("a_1", E1),
        _deleted("b_1", E2),
        _deleted("a_2", E1, "response.absent"),
        _deleted("a_3", E1),
        _completed(E1, 3, 1, list(withheld)),
        _completed(E2, 1, 0, []),
        None,
    ]
    records: list[Record] = []
    last = ""
    for seq, body in enumerate(bodies, start=1):
        ts = stamp(T0, seq)
        if body is None:
            details = checkpoint_details(
                records, signer=signer, chain=chain, ts=ts, prev_signature=last
            )
            last = details["signature"]
            body = {"event": "audit.checkpoint", "details": details}
        prev = records[-1]["hash"] if records else GENESIS
        records.append(seal({**body, "ts": ts}, chain=chain, seq=seq, prev_hash=prev))
    return records


TRAIL = _trail()
TREE = Tree([leaf_hash(r["hash"]) for r in TRAIL[:-1]])


def _find(trail: list[Record], event: str, erasure_id: str) -> Record:
    """The trail's `event` record of `erasure_id`."""
    return next(
        r for r in trail if r["event"] == event and r["details"].get("erasure_id") == erasure_id
    )


def _bundle(
    erasure_id: str = E1, trail: list[Record] = TRAIL, signer: Signer = REAL, ids: Any = None
) -> Record:
    """The bundle of `erasure_id` under the trail's last checkpoint."""
    tree = Tree([leaf_hash(r["hash"]) for r in trail[:-1]])
    pem = public_pem(signer.public)
    prove = lambda record: build_proof(record, tree, trail[-1], pem)  # noqa: E731
    ids = ids or ({"a_old", "a_1", "a_2", "a_3"} if erasure_id == E1 else {"b_1"})
    gone = [r for r in trail if r.get("response_id") in ids]
    return build_erasure_receipt(
        prove(_find(trail, "erasure.requested", erasure_id)),
        prove(_find(trail, "erasure.completed", erasure_id)),
        [prove(r) for r in gone],
    )


def reason(bundle: Record, key: Any = REAL.public) -> str | None:
    """What the check says of the bundle written as its file holds it."""
    return check_erasure_receipt(erasure_receipt_text(bundle), key)


def _copy(bundle: Record) -> Record:
    """A deep copy to forge."""
    return json.loads(json.dumps(bundle))


def test_the_tree_gives_the_paths_and_roots_of_rfc_9162() -> None:
    """Tree.path and Tree.root equal merkle.inclusion_proof and merkle.root for every leaf of
    every tree up to 40 leaves."""
    leaves = [leaf_hash(f"{i:064x}") for i in range(40)]
    assert Tree([]).root() == EMPTY_ROOT
    for n in range(1, 41):
        tree = Tree(leaves[:n])
        assert tree.root() == root(leaves[:n])
        for m in range(n):
            assert tree.path(m) == inclusion_proof(m, leaves[:n]), (n, m)
    with pytest.raises(ValueError, match="outside"):
        Tree(leaves[:3]).path(3)


def test_a_proof_is_the_deletion_receipt_build_receipt_makes() -> None:
    """build_proof over a tree gives exactly build_receipt's receipt, which check_receipt takes."""
    leaves = [leaf_hash(r["hash"]) for r in TRAIL[:-1]]
    pem = public_pem(REAL.public)
    for record in TRAIL[:-1]:
        if record["event"] in ("response.deleted", "response.absent"):
            made = build_receipt(record, leaves, TRAIL[-1], pem)
            assert build_proof(record, TREE, TRAIL[-1], pem) == made
            assert check_receipt(receipt_text(made), REAL.public) is None


def test_build_proof_refuses_a_tree_that_is_not_the_signed_one() -> None:
    """Leaves that disagree with the checkpoint's root or size give no proof."""
    leaves = [leaf_hash(r["hash"]) for r in TRAIL[:-1]]
    pem = public_pem(REAL.public)
    with pytest.raises(ValueError, match="cannot hold"):
        build_proof(TRAIL[4], Tree(leaves[:-1]), TRAIL[-1], pem)
    with pytest.raises(ValueError, match="root"):
        build_proof(TRAIL[4], Tree([leaf_hash("0" * 64), *leaves[1:]]), TRAIL[-1], pem)


def test_a_bundle_verifies_and_says_what_it_proves() -> None:
    """The bundle of E1 is valid; its facts count what the completion signed and how many
    deletions name the request."""
    bundle = _bundle()
    assert reason(bundle) is None
    text = erasure_receipt_text(bundle)
    assert text.count("\n") == 1 and text.endswith("\n")
    facts = erasure_facts(bundle)
    assert (facts["deleted"], facts["absent"], facts["withheld"]) == (3, 1, 1)
    assert (facts["linked"], facts["listed"]) == (3, 1)
    assert facts["subjects"] == [ALICE] and facts["withheld_records"] == [HELD]
    assert [r["record"]["response_id"] for r in bundle["receipts"]] == [
        "a_1",
        "a_2",
        "a_3",
        "a_old",
    ]
    assert reason(_bundle(E2)) is None


def test_each_receipt_in_a_bundle_is_a_deletion_receipt_on_its_own() -> None:
    """A receipt taken out of the bundle verifies as a deletion receipt."""
    for receipt in _bundle()["receipts"]:
        assert check_receipt(receipt_text(receipt), REAL.public) is None


def test_a_changed_withheld_list_fails() -> None:
    """Dropping or editing a withheld entry, or adding one, is caught."""
    for change in (
        lambda w: w.clear(),
        lambda w: w[0].update(hold="another-hold"),
        lambda w: w.append({"response_id": "x", "provider": "fireworks", "hold": "h"}),
    ):
        bundle = _bundle()
        change(bundle["withheld"])
        assert reason(bundle) == (
            "withheld is not the list the completion's record signs (withheld_records)"
        )


def test_a_withheld_list_changed_in_the_signed_record_too_fails() -> None:
    """Editing withheld_records in the completion record, re-hashed, breaks its proof."""
    bundle = _bundle()
    bundle["withheld"] = []
    record = bundle["completed"]["record"]
    record["details"].update(withheld_records=[], withheld=0)
    rehash(record)
    assert reason(bundle) == "completed: the inclusion proof does not lead to the signed root"


def test_a_dropped_receipt_fails() -> None:
    """Fewer receipts than the completion counts is caught, whichever is dropped."""
    for index in range(4):
        bundle = _bundle()
        dropped = bundle["receipts"].pop(index)["record"]["event"]
        name = "deleted" if dropped == "response.deleted" else "absent"
        assert f"completion counts {1 if name == 'absent' else 3} {name}" in (reason(bundle) or "")


def test_a_changed_count_fails() -> None:
    """A count changed in the completion record, re-hashed, breaks its proof."""
    bundle = _bundle()
    record = bundle["completed"]["record"]
    record["details"]["deleted"] = 2
    rehash(record)
    bundle["receipts"].pop(0)
    assert reason(bundle) == "completed: the inclusion proof does not lead to the signed root"


def test_a_receipt_twice_or_out_of_order_fails() -> None:
    """The same response twice, or receipts out of order, is refused."""
    bundle = _bundle()
    bundle["receipts"][1] = bundle["receipts"][0]
    assert reason(bundle) == "receipts[1]: a_1 is listed twice"
    bundle = _bundle()
    bundle["receipts"].reverse()
    assert "out of order" in (reason(bundle) or "")


def test_a_receipt_also_withheld_fails() -> None:
    """A response cannot be both deleted and withheld in one bundle."""
    trail = _trail(withheld=(HELD, dict(HELD, response_id="a_1")))
    assert reason(_bundle(trail=trail)) == "receipts[0]: a_1 is also listed as withheld"


def test_proofs_from_another_erasure_fail() -> None:
    """Bob's request or completion in Alice's bundle is caught, as is his bundle renamed."""
    other = _bundle(E2)
    bundle = _bundle()
    bundle["completed"] = other["completed"]
    assert reason(bundle) == f"completed: the record is of erasure {E2}, not this one"
    bundle = _bundle()
    bundle["requested"] = other["requested"]
    assert reason(bundle) == f"requested: the record is of erasure {E2}, not this one"
    renamed = _copy(other)
    renamed["erasure_id"] = E1
    assert reason(renamed) == f"requested: the record is of erasure {E2}, not this one"


def test_another_key_fails() -> None:
    """A bundle signed by another key fails under the pinned one, even naming its PEM."""
    trail = _trail(OTHER)
    bundle = _bundle(trail=trail, signer=OTHER)
    assert reason(bundle, OTHER.public) is None
    assert reason(bundle) == "public_key is not the pinned key's PEM"
    bundle["public_key"] = public_pem(REAL.public)
    assert (
        reason(bundle) == "requested: the checkpoint names another signing key than the pinned one"
    )


def test_a_receipt_signed_by_another_key_fails() -> None:
    """One receipt from a trail signed by another key spoils the bundle."""
    bundle = _bundle()
    foreign = _bundle(trail=_trail(OTHER), signer=OTHER)["receipts"][0]
    bundle["receipts"][0] = foreign
    assert reason(bundle) == (
        "receipts[0]: the checkpoint names another signing key than the pinned one"
    )


def test_subjects_must_be_the_signed_digests() -> None:
    """Another digest, or a raw value, in subjects is refused."""
    bundle = _bundle()
    bundle["subjects"] = [BOB]
    assert reason(bundle) == "subjects are not the digests the request's record names"
    bundle["subjects"] = ["alice@example.com"]
    assert "subjects must be a list of digests" in (reason(bundle) or "")


def test_a_non_deletion_among_the_receipts_fails() -> None:
    """The request's own record passed off as a deletion receipt is refused."""
    bundle = _bundle()
    bundle["receipts"][0] = bundle["requested"]
    assert reason(bundle) == (
        "receipts[0]: the record is a 'erasure.requested' event, not a deletion"
    )


def test_an_erasure_record_proof_must_be_of_its_event() -> None:
    """The completion's proof in place of the request's is refused by event."""
    bundle = _bundle()
    bundle["requested"] = bundle["completed"]
    assert reason(bundle) == (
        "requested: the record is a 'erasure.completed' event, not 'erasure.requested'"
    )


def test_a_flipped_bit_anywhere_fails() -> None:
    """Flipping the low bit of any byte of the file makes it fail."""
    data = erasure_receipt_text(_bundle(E2)).encode()
    assert data.isascii()
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 0x01
        assert check_erasure_receipt(changed.decode(), REAL.public) is not None, position


@pytest.mark.parametrize(
    "text", ["", "[]\n", "null\n", '{"erasure_receipt":1}\n', "1e999\n", "[" * 100_000]
)
def test_junk_is_invalid_not_a_crash(text: str) -> None:
    """Anything that is not an erasure receipt gets a reason, not an exception."""
    assert check_erasure_receipt(text, REAL.public) is not None


def test_a_wrong_type_anywhere_is_invalid_not_a_crash() -> None:
    """Each top-level field, and each field of the erasure records' details, replaced by a
    value of another type gets a reason, not an exception."""
    bundle = _bundle()
    paths: list[tuple[Any, ...]] = [(k,) for k in bundle] + [
        (name, "record", "details", k)
        for name in ("requested", "completed")
        for k in bundle[name]["record"]["details"]
    ]
    paths += [("withheld", 0, k) for k in HELD] + [("receipts", 0), ("withheld", 0)]
    for path in paths:
        for junk in (None, True, 1, "x", [], {}):
            forged = _copy(bundle)
            parent = forged
            for key in path[:-1]:
                parent = parent[key]
            if parent[path[-1]] == junk and type(parent[path[-1]]) is type(junk):
                continue
            parent[path[-1]] = junk
            assert reason(forged) is not None, (path, junk)


def test_witnessed_wants_every_checkpoint_kept() -> None:
    """Against kept checkpoints: all of the bundle's must be among them, unchanged."""
    text = erasure_receipt_text(_bundle())
    assert erasure_witnessed(text, [TRAIL[-1]]) is None
    assert erasure_witnessed(text, [TRAIL[1]]) == (
        "requested: its checkpoint is not among the kept or witnessed checkpoints"
    )


def test_the_erasure_receipt_module_needs_no_database_stack() -> None:
    """Importing the erasure receipt check loads neither SQLAlchemy nor the ledger."""
    code = (
        "import sys, retention.audit.erasure_receipt_format\n"
        "assert not {m for m in sys.modules if m.startswith(('sqlalchemy', 'retention.config',"
        " 'retention.ledger', 'retention.evidence'))}, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
