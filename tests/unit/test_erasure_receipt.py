"""Erasure receipts: a bundle built from a signed trail verifies with the public key alone; a
changed list of the request's records, a changed withheld list, a dropped receipt, a receipt of
a record not in the list, a changed count, a proof from another request or another key, and
junk all fail with a reason."""

from __future__ import annotations

import hashlib
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
    records_digest,
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
E0, E1, E2 = "er_" + "0" * 20, "er_" + "1" * 20, "er_" + "2" * 20
ALICE, BOB = "a" * 64, "b" * 64
CASE = "case-2026-113"
HELD = {"response_id": "a_held", "provider": "fireworks", "hold": CASE}

Record = dict[str, Any]


def _entries(**outcomes: str) -> list[Record]:
    """A request's records list, by response ID (all at fireworks)."""
    return [
        {"provider": "fireworks", "response_id": rid, "outcome": outcome}
        for rid, outcome in sorted(outcomes.items())
    ]


# Alice's request E1: three deletions for it, one gone before it at its deadline (a_old), one
# deleted under her earlier request E0 (a_prev), one failed, one withheld. Bob's E2: one.
ALICE_RECORDS = _entries(
    a_1="deleted",
    a_2="absent",
    a_3="deleted",
    a_fail="failed",
    a_held="withheld",
    a_old="deleted",
    a_prev="deleted",
)
BOB_RECORDS = _entries(b_1="deleted")


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


def _completed(erasure_id: str, records: list[Record], **forged: Any) -> Record:
    """An `erasure.completed` body as `_complete` writes it for `records` (details in `forged`
    replaced, as an operator holding the key could sign)."""
    counts = {k: 0 for k in ("deleted", "absent", "failed", "pending", "withheld")}
    for entry in records:
        counts[entry["outcome"]] += 1
    withheld = [
        {"response_id": e["response_id"], "provider": e["provider"], "hold": CASE}
        for e in records
        if e["outcome"] == "withheld"
    ]
    details = {
        "erasure_id": erasure_id,
        "matched": len(records),
        **counts,
        "withheld_records": withheld,
        "records_sha256": records_digest(records),
    }
    return {"event": "erasure.completed", "details": {**details, **forged}}


def _trail(
    signer: Signer = REAL, alice: list[Record] = ALICE_RECORDS, **forged: Any
) -> list[Record]:
    """Alice's records gone before her request (E1), deleted for it and failed; Bob's request
    (E2) meanwhile; a signed checkpoint after each part. E1 completes signing `alice` as its
    list, and `forged` in place of what that list gives."""
    chain = "main"
    bodies: list[Record | None] = [
        _deleted("a_old", None),
        _deleted("a_prev", E0),
        None,
        _requested(E1, ALICE),
        _requested(E2, BOB),
        _deleted("a_1", E1),
        _deleted("b_1", E2),
        _deleted("a_2", E1, "response.absent"),
        _deleted("a_3", E1),
        _completed(E1, alice, **forged),
        _completed(E2, BOB_RECORDS),
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
    erasure_id: str = E1,
    trail: list[Record] = TRAIL,
    signer: Signer = REAL,
    records: list[Record] | None = None,
    ids: Any = None,
) -> Record:
    """The bundle of `erasure_id` under the trail's last checkpoint: `records` as its list
    (by default the one its completion signs in TRAIL), and the receipts of `ids` (by default
    those that list says deleted or absent)."""
    honest = ALICE_RECORDS if erasure_id == E1 else BOB_RECORDS
    records = honest if records is None else records
    ids = ids or {e["response_id"] for e in honest if e["outcome"] in ("deleted", "absent")}
    tree = Tree([leaf_hash(r["hash"]) for r in trail[:-1]])
    pem = public_pem(signer.public)
    prove = lambda record: build_proof(record, tree, trail[-1], pem)  # noqa: E731
    gone = [r for r in trail if r.get("response_id") in ids]
    return build_erasure_receipt(
        prove(_find(trail, "erasure.requested", erasure_id)),
        prove(_find(trail, "erasure.completed", erasure_id)),
        [prove(r) for r in gone],
        records,
    )


def reason(bundle: Record, key: Any = REAL.public) -> str | None:
    """What the check says of the bundle written as its file holds it."""
    return check_erasure_receipt(erasure_receipt_text(bundle), key)


def _copy(bundle: Record) -> Record:
    """A deep copy to forge."""
    return json.loads(json.dumps(bundle))


def _index(bundle: Record, rid: str) -> int:
    """Where `rid` stands in the bundle's records list."""
    return [e["response_id"] for e in bundle["records"]].index(rid)


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
    """The bundle of E1 is valid, with a receipt naming an earlier request and one naming
    none; its facts count what the completion signed and how many deletions name the request."""
    bundle = _bundle()
    assert reason(bundle) is None
    text = erasure_receipt_text(bundle)
    assert text.count("\n") == 1 and text.endswith("\n")
    facts = erasure_facts(bundle)
    assert (facts["matched"], facts["deleted"], facts["absent"]) == (7, 4, 1)
    assert (facts["failed"], facts["pending"], facts["withheld"]) == (1, 0, 1)
    assert (facts["linked"], facts["unlinked"]) == (3, 2)
    assert facts["records_sha256"] == records_digest(ALICE_RECORDS)
    assert facts["failed_records"] == [{"response_id": "a_fail", "provider": "fireworks"}]
    assert facts["subjects"] == [ALICE] and facts["withheld_records"] == [HELD]
    assert bundle["records"] == ALICE_RECORDS
    receipts = [r["record"] for r in bundle["receipts"]]
    assert [r["response_id"] for r in receipts] == ["a_1", "a_2", "a_3", "a_old", "a_prev"]
    assert [r["details"].get("erasure_id") for r in receipts[3:]] == [None, E0]
    assert reason(_bundle(E2)) is None


def test_the_records_digest_is_sha256_of_its_lines() -> None:
    """records_sha256 is SHA-256 of `PROVIDER<TAB>RESPONSE_ID<TAB>OUTCOME<LF>` per record, in
    the order given; none is the digest of nothing."""
    lines = b"fireworks\ta_1\tdeleted\nopenai\tresp_2\twithheld\n"
    records = [
        {"provider": "fireworks", "response_id": "a_1", "outcome": "deleted"},
        {"provider": "openai", "response_id": "resp_2", "outcome": "withheld"},
    ]
    assert records_digest(records) == hashlib.sha256(lines).hexdigest()
    assert records_digest([]) == hashlib.sha256(b"").hexdigest()


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
    """A record the list says deleted or absent without its receipt is caught, whichever is
    dropped."""
    for index in range(5):
        bundle = _bundle()
        record = bundle["receipts"].pop(index)["record"]
        rid, outcome = record["response_id"], record["event"].split(".")[1]
        assert reason(bundle) == (
            f"records[{_index(bundle, rid)}]: {rid} is {outcome}, but no receipt proves it"
        )


def test_a_record_dropped_from_the_list_fails() -> None:
    """Dropping any record from the list, with its receipt or without, breaks the signed
    digest."""
    for index in range(len(ALICE_RECORDS)):
        for with_receipt in (False, True):
            bundle = _bundle()
            rid = bundle["records"].pop(index)["response_id"]
            if with_receipt:
                bundle["receipts"] = [
                    r for r in bundle["receipts"] if r["record"]["response_id"] != rid
                ]
            assert reason(bundle) == (
                "records are not the list the completion's record signs (records_sha256)"
            )


def test_a_changed_outcome_fails() -> None:
    """Any record's outcome changed to any other breaks the signed digest."""
    for index, entry in enumerate(ALICE_RECORDS):
        for outcome in ("deleted", "absent", "failed", "withheld"):
            if outcome == entry["outcome"]:
                continue
            bundle = _bundle()
            bundle["records"][index]["outcome"] = outcome
            assert reason(bundle) == (
                "records are not the list the completion's record signs (records_sha256)"
            ), (entry, outcome)


def test_a_receipt_for_a_record_not_in_the_list_fails() -> None:
    """Bob's deletion added to Alice's bundle, or a receipt of a record the signed list leaves
    out, is refused."""
    bundle = _bundle()
    bundle["receipts"].append(_bundle(E2)["receipts"][0])
    assert reason(bundle) == "receipts[5]: b_1 (fireworks) is not among the request's records"
    bundle = _bundle()
    bundle["receipts"][2] = _bundle(E2)["receipts"][0]  # in a_3's place
    assert reason(bundle) == "receipts[2]: b_1 (fireworks) is not among the request's records"
    without = [e for e in ALICE_RECORDS if e["response_id"] != "a_old"]
    bundle = _bundle(trail=_trail(alice=without), records=without)
    assert reason(bundle) == "receipts[3]: a_old (fireworks) is not among the request's records"


def test_a_receipt_of_another_outcome_fails() -> None:
    """A `response.absent` receipt for a record the signed list says deleted is refused."""
    alice = [dict(e, outcome="deleted") if e["response_id"] == "a_2" else e for e in ALICE_RECORDS]
    bundle = _bundle(trail=_trail(alice=alice), records=alice)
    assert reason(bundle) == "receipts[1]: a_2 is deleted in the records, not absent"


def test_a_list_out_of_order_or_twice_fails() -> None:
    """The records list must be in provider, then response ID order, one entry a response."""
    bundle = _bundle()
    bundle["records"].reverse()
    assert reason(bundle) == (
        "records[1]: a_old is listed out of order (provider, then response ID)"
    )
    bundle = _bundle()
    bundle["records"][1] = dict(bundle["records"][0])
    assert reason(bundle) == "records[1]: a_1 is listed twice"


def test_a_signed_list_at_odds_with_the_signed_counts_fails() -> None:
    """A completion whose counts disagree with the list it signs is refused, however signed."""
    bundle = _bundle(trail=_trail(deleted=5))
    assert reason(bundle) == "records list 4 deleted, the completion's record counts 5 deleted"
    bundle = _bundle(trail=_trail(matched=8))
    assert reason(bundle) == "records list 7 records, the completion's record counts 8 matched"


def test_a_signed_withheld_list_at_odds_with_the_list_fails() -> None:
    """A completion that signs one record withheld in its list and another in withheld_records
    is refused."""
    other = [dict(HELD, response_id="a_fail")]
    trail = _trail(withheld_records=other)
    bundle = _bundle(trail=trail)
    bundle["withheld"] = other
    assert reason(bundle) == "withheld is not the records the list says withheld"


def test_a_completion_without_the_digest_fails() -> None:
    """A signed completion that carries no records_sha256 proves no list."""
    bundle = _bundle(trail=_trail(records_sha256=None))
    assert reason(bundle) == (
        "completed: the record signs no records_sha256 (64 lowercase hex characters)"
    )


def test_a_list_entry_that_does_not_fit_a_line_fails() -> None:
    """A tab or newline in a provider or response ID, or an unknown outcome, is refused."""
    for key, value in (("response_id", "a\t1"), ("provider", "fire\nworks"), ("outcome", "x")):
        bundle = _bundle()
        bundle["records"][0][key] = value
        assert "records must be a list of {provider, response_id, outcome}" in (
            reason(bundle) or ""
        )


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
    alice = [dict(e, outcome="withheld") if e["response_id"] == "a_1" else e for e in ALICE_RECORDS]
    bundle = _bundle(trail=_trail(alice=alice), records=alice)
    assert reason(bundle) == "receipts[0]: a_1 is withheld in the records, not deleted"


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
    paths += [("records", 0, k) for k in ALICE_RECORDS[0]] + [("records", 0)]
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
    assert erasure_witnessed(text, [TRAIL[2]]) == (
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
