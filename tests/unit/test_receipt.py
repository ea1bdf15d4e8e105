"""Deletion receipts: built from a signed chain, they verify; any changed byte, any other key,
and any forgery a key-less forger can compute make them fail."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.hashchain import canonical
from retention.audit.merkle import inclusion_proof, leaf_hash
from retention.audit.receipt_format import (
    build_receipt,
    check_receipt,
    receipt_text,
)
from retention.audit.signatures import public_pem
from retention.core.vocabulary import GONE_EVENTS
from retention.evidence.signing_key import Signer
from tests.forgery import build, checkpoint_details, rehash

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)  # pure code: the trail's times are the test's own
REAL = Signer(Ed25519PrivateKey.generate())
OTHER = Signer(Ed25519PrivateKey.generate())
# 29 records, a checkpoint every 4th seq and at the end; seq 6 records a provider's 404
TRAIL = build(29, signer=REAL, t0=T0, events={6: "response.absent", 9: "response.recorded"})
LEAVES = [leaf_hash(r["hash"]) for r in TRAIL]
CHECKPOINTS = [r for r in TRAIL if r["event"] == "audit.checkpoint"]

Record = dict[str, Any]


def receipt_of(seq: int, checkpoint: Record | None = None, signer: Signer = REAL) -> Record:
    """The receipt of the record at `seq` under `checkpoint` (default: the first covering it)."""
    checkpoint = checkpoint or next(c for c in CHECKPOINTS if c["seq"] > seq)
    size = checkpoint["details"]["covers_seq"]
    return build_receipt(TRAIL[seq - 1], LEAVES[:size], checkpoint, public_pem(signer.public))


def reason(receipt: Record, key: Any = REAL.public) -> str | None:
    """What `check_receipt` says about the receipt written as its file holds it."""
    return check_receipt(receipt_text(receipt), key)


def resealed(receipt: Record) -> Record:
    """The receipt with its record and checkpoint re-hashed, as a forger without the key can."""
    rehash(receipt["record"])
    rehash(receipt["checkpoint"])
    return receipt


def test_every_deletion_under_every_later_checkpoint_verifies() -> None:
    """Each deletion record has a valid receipt under each checkpoint after it."""
    deletions = [r for r in TRAIL if r["event"] in GONE_EVENTS]
    assert len(deletions) == 20
    checked = 0
    for record in deletions:
        for checkpoint in (c for c in CHECKPOINTS if c["seq"] > record["seq"]):
            receipt = receipt_of(record["seq"], checkpoint)
            assert reason(receipt) is None, (record["seq"], checkpoint["seq"])
            assert receipt["tree_size"] == checkpoint["seq"] - 1
            checked += 1
    assert checked > 80


def test_a_receipt_is_one_canonical_line() -> None:
    """The file is canonical JSON and a newline, with the contract's fields."""
    receipt = receipt_of(6)
    text = receipt_text(receipt)
    assert text == canonical(json.loads(text)) + "\n" and text.count("\n") == 1
    assert receipt["receipt_version"] == 1 and receipt["record"]["event"] == "response.absent"
    assert receipt["leaf_index"] == 5 and receipt["tree_size"] == 7
    assert receipt["public_key"] == public_pem(REAL.public)


@pytest.mark.parametrize("mask", [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40])
def test_each_byte_changed_fails(mask: int) -> None:
    """Flipping one bit of any one byte of a receipt file (every position) makes it fail."""
    data = receipt_text(receipt_of(13)).encode()
    assert data.isascii()
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= mask
        text = changed.decode()
        assert check_receipt(text, REAL.public) is not None, (position, text[position - 20 :][:40])


def test_another_key_fails() -> None:
    """A receipt does not verify under a key other than the one that signed it."""
    assert reason(receipt_of(5), OTHER.public) == (
        "the checkpoint names another signing key than the pinned one"
    )


def test_a_receipt_signed_by_another_key_fails_under_the_pinned_one() -> None:
    """A trail signed by someone else's key gives receipts that only verify under that key."""
    trail = build(8, signer=OTHER, t0=T0)
    leaves = [leaf_hash(r["hash"]) for r in trail]
    receipt = build_receipt(trail[2], leaves[:7], trail[7], public_pem(REAL.public))
    assert reason(receipt) is not None
    receipt["public_key"] = public_pem(OTHER.public)
    assert reason(receipt, OTHER.public) is None


def test_a_shorter_tree_size_than_the_signed_one_fails() -> None:
    """A receipt cannot claim a tree size other than the checkpoint's covers_seq."""
    receipt = receipt_of(2, CHECKPOINTS[1])
    receipt["tree_size"] = 4
    receipt["inclusion_proof"] = [h.hex() for h in inclusion_proof(1, LEAVES[:4])]
    assert "covers_seq" in (reason(receipt) or "")


def test_an_edited_record_rehashed_fails() -> None:
    """Another response ID in the record, re-hashed, is not in the signed tree."""
    receipt = receipt_of(5)
    receipt["record"]["response_id"] = "someone_else"
    assert reason(resealed(receipt)) == "the inclusion proof does not lead to the signed root"


def test_a_record_that_is_no_deletion_fails() -> None:
    """A receipt for a record that is not a deletion fails, though it is in the tree."""
    receipt = resealed(receipt_of(9))
    assert reason(receipt) == "the record is a 'response.recorded' event, not a deletion"


def test_a_checkpoint_of_another_chain_fails() -> None:
    """The checkpoint must be of the record's chain."""
    receipt = receipt_of(5)
    receipt["checkpoint"]["chain"] = "other"
    assert reason(resealed(receipt)) == "the checkpoint is of another chain than the record"


def test_a_non_canonical_signature_encoding_fails() -> None:
    """Base64 with non-zero padding bits decodes to the same signature but is refused."""
    receipt = receipt_of(5)
    details = receipt["checkpoint"]["details"]
    signature = details["signature"]
    assert signature.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(signature[-3]) | 1]
    details["signature"] = signature[:-3] + last + "=="
    assert base64.b64decode(details["signature"]) == base64.b64decode(signature)
    assert reason(resealed(receipt)) == "the checkpoint's signature is not canonical base64"


def test_a_signature_over_other_details_fails() -> None:
    """Re-signing the checkpoint with another key, naming the real one, does not verify."""
    receipt = receipt_of(5)
    checkpoint = receipt["checkpoint"]
    details = checkpoint_details(TRAIL[:7], signer=OTHER, chain="main", ts=checkpoint["ts"])
    details["key_fingerprint"] = REAL.fingerprint
    checkpoint["details"] = details
    assert reason(resealed(receipt)) == (
        "the checkpoint's signature does not verify under the pinned key"
    )


def test_a_pretty_printed_receipt_fails() -> None:
    """The same receipt indented is not the canonical spelling."""
    text = json.dumps(receipt_of(5), indent=1, sort_keys=True) + "\n"
    assert check_receipt(text, REAL.public) is not None


@pytest.mark.parametrize(
    "text",
    ["", "[]\n", "null\n", '{"receipt_version":1}\n', "1e999\n", "[" * 100_000, "\ud800"],
)
def test_junk_is_invalid_not_a_crash(text: str) -> None:
    """Anything that is not a receipt gets a reason, not an exception."""
    assert check_receipt(text, REAL.public) is not None


def test_a_wrong_type_anywhere_is_invalid_not_a_crash() -> None:
    """Each field replaced by a value of another type gets a reason, not an exception."""
    receipt = receipt_of(5)
    paths = (
        [(k,) for k in receipt]
        + [("record", k) for k in receipt["record"]]
        + [("checkpoint", k) for k in receipt["checkpoint"]]
        + [("checkpoint", "details", k) for k in receipt["checkpoint"]["details"]]
    )
    for path in paths:
        for junk in (None, True, 1, "x", [], {}):
            forged = json.loads(json.dumps(receipt))
            parent = forged
            for key in path[:-1]:
                parent = parent[key]
            if parent[path[-1]] == junk and type(parent[path[-1]]) is type(junk):
                continue
            parent[path[-1]] = junk
            assert reason(forged) is not None, (path, junk)


def test_build_refuses_leaves_that_are_not_the_signed_tree() -> None:
    """A ledger whose hashes disagree with the signed root gets no receipt."""
    leaves = list(LEAVES[:7])
    leaves[0] = leaf_hash("0" * 64)
    with pytest.raises(ValueError, match="root"):
        build_receipt(TRAIL[4], leaves, CHECKPOINTS[1], public_pem(REAL.public))
    with pytest.raises(ValueError, match="cannot hold"):
        build_receipt(TRAIL[9], LEAVES[:7], CHECKPOINTS[1], public_pem(REAL.public))


def test_the_receipt_module_needs_no_database_stack() -> None:
    """Importing the receipt check loads neither SQLAlchemy nor the configuration."""
    code = (
        "import sys, retention.audit.receipt_format\n"
        "assert not {m for m in sys.modules if m.startswith(('sqlalchemy', 'retention.config',"
        " 'retention.ledger'))}, sorted(sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
