"""The verifier against the host's own operator: every forgery fails, every honest trail passes.

A verifier that passes forged input is worse than none. The forger here may edit, delete,
reorder, re-hash and re-link anything, and in some cases holds the real signing key; the auditor
holds the public key and, sometimes, checkpoints received earlier (a witness copy).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.merkle import Frontier, consistency_proof, leaf_hash
from retention.audit.verifier import Anchors, Verdict, verify_records
from retention.evidence.signing_key import Signer
from tests.forgery import build, frontier_before, rechain, rehash, resign, stamp

T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)  # pure code: the trail's times are the test's own
REAL = Signer(Ed25519PrivateKey.generate())
ATTACKER = Signer(Ed25519PrivateKey.generate())
Records = list[dict[str, Any]]


def trail(n: int = 12, **kw: Any) -> Records:
    """A sound 12-record trail, a checkpoint every 4th record, signed with the real key."""
    return build(n, signer=kw.pop("signer", REAL), t0=T0, **kw)


def check(records: Records, **anchors: Any) -> Verdict:
    """Verify with the real public key pinned, plus any other anchors."""
    present = {(r.get("chain"), r.get("seq")) for r in records if isinstance(r, dict)}
    return verify_records(
        copy.deepcopy(records),
        Anchors(key=REAL.public, **anchors),
        located=lambda chain, seq: (chain, seq) in present,
    )


def kind(records: Records, **anchors: Any) -> str | None:
    """The fault kind (None when sound)."""
    fault = check(records, **anchors).fault
    return fault.kind if fault else None


def _edit(r: Records) -> Records:
    r[4]["response_id"] = "someone-else"
    return r


def _delete(r: Records) -> Records:
    del r[5]
    return r


def _reorder(r: Records) -> Records:
    r[5], r[6] = r[6], r[5]
    return r


def _rehash_one(r: Records) -> Records:
    r[4]["policy"] = "pii"
    rehash(r[4])
    return r


def _rechain_tail_without_checkpoints(r: Records) -> Records:
    """A fake deletion in the tail, the tail re-linked, its checkpoints dropped (no key)."""
    r[9]["response_id"] = "forged"
    kept = [x for i, x in enumerate(r) if i < 8 or x["event"] != "audit.checkpoint"]
    rechain(kept, 8)
    return kept


def _history_rewritten_checkpoints_removed(r: Records) -> Records:
    """The issue's first forgery: a policy changed, a fake deletion added, re-hashed, every
    checkpoint removed."""
    r[1]["policy"] = "evals"
    fake = dict(r[2], response_id="never-stored", event="response.deleted")
    body = [x for x in r[:3] if x["event"] != "audit.checkpoint"] + [fake]
    body += [x for x in r[3:] if x["event"] != "audit.checkpoint"]
    rechain(body)
    return body


def _tail_cut_last_checkpoint_removed(r: Records) -> Records:
    return r[:-1]


def _starts_after_a_checkpoint_no_anchor(r: Records) -> Records:
    return r[8:]


def _side_chain(r: Records) -> Records:
    side = build(3, signer=REAL, t0=T0, chain="replica-2", every=99)[:2]
    side[1]["event"] = "response.deleted"
    rechain(side)
    return [*r, *side]


def _attacker_signed(r: Records) -> Records:
    return trail(signer=ATTACKER)


def _bad_root_signed_with_the_real_key(r: Records) -> Records:
    """A holder of the real key signs a checkpoint whose root is not the records'."""
    from retention.audit.checkpoint_message import signed_message

    cp = r[7]
    cp["details"]["root_hash"] = "ab" * 32
    cp["details"]["signature"] = REAL.sign(signed_message(cp["details"], chain="main", ts=cp["ts"]))
    rehash(cp)
    resign_from = 8
    rechain(r, resign_from)
    r[11]["details"]["covers_hash"] = r[10]["hash"]
    r[11]["details"]["prev_signature"] = cp["details"]["signature"]
    r[11]["details"]["signature"] = REAL.sign(
        signed_message(r[11]["details"], chain="main", ts=r[11]["ts"])
    )
    rehash(r[11])
    return r


def _unsigned_field_in_the_last_checkpoint(r: Records) -> Records:
    """A claim slipped into the last checkpoint's details, outside what its signature covers."""
    r[11]["details"]["note"] = "all deleted on time"
    rehash(r[11])
    return r


def _signature_altered(r: Records) -> Records:
    sig = r[3]["details"]["signature"]
    r[3]["details"]["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    rechain(r, 3)
    return r


def _reused_signature(r: Records) -> Records:
    r[7]["details"] = dict(r[3]["details"], covers_seq=7, covers_hash=r[6]["hash"])
    rechain(r, 7)
    return r


FORGERIES: list[tuple[str, Callable[[Records], Records], str]] = [
    ("a field edited", _edit, "modified"),
    ("a record deleted", _delete, "missing"),
    ("two records reordered", _reorder, "reordered"),
    ("one record re-hashed", _rehash_one, "broken_link"),
    ("a tail re-chained, its checkpoints removed", _rechain_tail_without_checkpoints, "unanchored"),
    ("history rewritten, every checkpoint removed", _history_rewritten_checkpoints_removed,
     "unsigned_chain"),
    ("the tail cut, its last checkpoint removed", _tail_cut_last_checkpoint_removed, "unanchored"),
    ("a start past seq 1 without an anchor", _starts_after_a_checkpoint_no_anchor,
     "unanchored_start"),
    ("a fabricated side chain", _side_chain, "unsigned_chain"),
    ("signed with an attacker's key", _attacker_signed, "unknown_key"),
    ("a wrong root signed with the real key", _bad_root_signed_with_the_real_key, "root_mismatch"),
    ("a checkpoint signature altered", _signature_altered, "forged_signature"),
    ("a signature reused", _reused_signature, "checkpoint_chain"),
    ("an unsigned field in a checkpoint", _unsigned_field_in_the_last_checkpoint, "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "forge", "expected"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_each_forgery_is_caught(
    name: str, forge: Callable[[Records], Records], expected: str
) -> None:
    """Each tampering in the table fails with its own fault kind under the real key."""
    assert kind(forge(trail())) == expected, name


def test_a_sound_trail_verifies() -> None:
    """Untouched, with checkpoints signed by the pinned key, the trail is sound and covered."""
    verdict = check(trail())
    assert verdict.sound, verdict.fault
    assert verdict.chains["main"].checkpoints == 3 and verdict.chains["main"].covered_seq == 12


def test_a_forged_start_after_a_trusted_checkpoint_is_inconsistent() -> None:
    """An operator with the real key fabricates a trail that starts after a checkpoint the
    auditor holds, with a leading checkpoint and a frontier of its own: not provably an
    extension of what the auditor holds."""
    honest = trail(16)
    held = honest[3]  # seq 4
    forged = trail(16)
    forged[1]["policy"] = "evals"
    resign(forged, REAL, 1)
    partial = forged[7:]  # starts at the checkpoint at seq 8
    anchors = {"frontiers": {"main": frontier_before(forged, 8)}, "checkpoints": [held]}
    assert kind(partial, **anchors) == "inconsistent"
    proof = consistency_proof(3, [leaf_hash(r["hash"]) for r in forged[:7]])
    bogus = {"main": [{"from_size": 3, "to_size": 7, "proof": [h.hex() for h in proof]}]}
    assert kind(partial, consistency=bogus, **anchors) == "inconsistent"


def test_a_partial_export_that_provably_extends_a_held_checkpoint_passes() -> None:
    """A start past seq 1 with the manifest's frontier and a consistency proof from the
    auditor's checkpoint verifies."""
    records = trail(16)
    proof = consistency_proof(3, [leaf_hash(r["hash"]) for r in records[:7]])
    anchors = {
        "frontiers": {"main": frontier_before(records, 8)},
        "consistency": {
            "main": [{"from_size": 3, "to_size": 7, "proof": [h.hex() for h in proof]}]
        },
        "checkpoints": [records[3]],
    }
    verdict = check(records[7:], **anchors)
    assert verdict.sound, verdict.fault


def test_a_partial_start_with_a_wrong_frontier_fails() -> None:
    """A frontier that does not fold to the leading checkpoint's signed root is refused."""
    records = trail(16)
    wrong = frontier_before(records, 8)
    wrong.hashes[0] = b"\x00" * 32
    assert kind(records[7:], frontiers={"main": wrong}) == "unanchored_start"


def test_a_witnessed_checkpoint_rewritten_is_inconsistent() -> None:
    """The operator rewrites the whole trail and re-signs it with the real key: sound on its
    own, but the witness's copy of a checkpoint no longer matches."""
    honest = trail()
    witnessed = copy.deepcopy(honest[3])
    forged = trail()
    forged[1]["response_id"] = "another"
    resign(forged, REAL, 1)
    assert kind(forged) is None, "with the real key, a rewrite is consistent on its own"
    assert kind(forged, checkpoints=[witnessed]) == "inconsistent"
    assert kind(honest, checkpoints=[witnessed]) is None


def test_truncated_against_manifest_and_held_checkpoints() -> None:
    """A trail cut after a checkpoint is caught by the expected head or a later held one."""
    full = trail()
    cut = full[:8]
    assert kind(cut) is None, "nothing inside the cut trail is wrong"
    assert kind(cut, expected_heads={"main": (12, full[-1]["hash"])}) == "truncated"
    assert kind(cut, checkpoints=[full[11]]) == "truncated"


def test_a_key_rotation_is_followed_from_the_pinned_key() -> None:
    """Checkpoints after a signed transition verify under the new key; pinning the old key is
    enough, and a transition that names another key than it carries is refused."""
    new = Signer(Ed25519PrivateKey.generate())
    rotated = trail(rotate_at={8: new})
    verdict = check(rotated)
    assert verdict.sound, verdict.fault
    lying = copy.deepcopy(rotated)
    lying[7]["details"]["next_key_fingerprint"] = ATTACKER.fingerprint
    from retention.audit.checkpoint_message import signed_message

    lying[7]["details"]["signature"] = REAL.sign(
        signed_message(lying[7]["details"], chain="main", ts=lying[7]["ts"])
    )
    rechain(lying, 7)
    assert kind(lying) == "unknown_key"


def test_a_checkpoint_by_the_old_key_after_a_rotation_is_refused() -> None:
    """Once the chain handed over to a new key, the old key signs nothing more in it."""
    new = Signer(Ed25519PrivateKey.generate())
    records = trail(16, rotate_at={4: new})
    resign_with_old = copy.deepcopy(records)
    resign(resign_with_old, REAL, 4)  # checkpoints 8, 12, 16 signed by the old key again
    resign_with_old[3] = records[3]
    assert kind(resign_with_old) == "unknown_key"


def test_checkpoint_gaps_are_a_warning_not_a_fault() -> None:
    """One-shot sweeps far apart leave long gaps between checkpoints: named, not tampering."""
    verdict = check(trail(step=10, interval_s=600))
    assert verdict.sound and any("no checkpoint between" in w for w in verdict.warnings)


def test_ledger_mode_reports_an_uncovered_tail_as_a_warning() -> None:
    """Without strict ends a tail after the last checkpoint is a warning."""
    records = [*trail(13, every=4)[:-1], trail(14)[12]]
    rechain(records, 12)
    verdict = verify_records(records, Anchors(key=REAL.public), strict_ends=False)
    assert verdict.sound and any("not yet covered" in w for w in verdict.warnings)


@pytest.mark.parametrize(
    "junk",
    [None, 3, "text", {"seq": "1"}, {"chain": "x", "seq": 1}, {"chain": "x", "seq": True}],
)
def test_junk_lines_are_faults_not_crashes(junk: Any) -> None:
    """Anything that is not a record is a fault."""
    assert kind([*trail()[:2], junk]) in ("malformed", "modified")


def test_hash_only_checks_links_and_says_so() -> None:
    """Without a key: hashes and links checked, and the verdict says signatures were not."""
    verdict = verify_records(trail(signer=ATTACKER), Anchors())
    assert verdict.sound and verdict.hash_only and verdict.warnings
    assert verify_records(_delete(trail()), Anchors()).fault is not None


def test_old_checkpoints_without_roots_keep_verifying() -> None:
    """A checkpoint written before Merkle roots (no root_hash) verifies under the old rules."""
    from retention.audit.checkpoint_message import signed_message
    from retention.audit.hashchain import GENESIS, seal

    first = seal({"event": "policy.loaded", "ts": stamp(T0, 1)}, chain="main", seq=1,
                 prev_hash=GENESIS)  # fmt: skip
    details = {
        "covers_seq": 1,
        "covers_hash": first["hash"],
        "prev_signature": "",
        "key_fingerprint": REAL.fingerprint,
        "interval_s": 600,
    }
    details["signature"] = REAL.sign(signed_message(details, chain="main", ts=stamp(T0, 2)))
    cp = seal({"event": "audit.checkpoint", "ts": stamp(T0, 2), "details": details},
              chain="main", seq=2, prev_hash=first["hash"])  # fmt: skip
    assert check([first, cp]).sound
    assert Frontier().size == 0


def test_a_partial_start_at_a_checkpoint_without_a_root_is_unanchored() -> None:
    """A leading checkpoint that signs no root cannot prove the manifest's frontier."""
    from retention.audit.checkpoint_message import signed_message

    records = trail(16)
    lead = records[7]
    del lead["details"]["root_hash"]
    lead["details"]["signature"] = REAL.sign(
        signed_message(lead["details"], chain="main", ts=lead["ts"])
    )
    rehash(lead)
    assert kind(records[7:8], frontiers={"main": frontier_before(records, 8)}) == "unanchored_start"


def test_a_checkpoint_without_a_root_after_roots_is_refused() -> None:
    """Once a chain's checkpoints sign roots, one without (re-signed with the real key) fails."""
    records = trail(12)
    resign(records, REAL)
    from retention.audit.checkpoint_message import signed_message

    cp = records[11]
    del cp["details"]["root_hash"]
    cp["details"]["signature"] = REAL.sign(signed_message(cp["details"], chain="main", ts=cp["ts"]))
    rehash(cp)
    assert kind(records) == "root_mismatch"


def test_an_empty_trail_is_not_sound() -> None:
    """No records at all is no evidence: truncated."""
    assert kind([]) == "truncated"


def test_a_chain_begun_after_a_rotation_verifies_from_the_first_key() -> None:
    """A chain whose first checkpoint is signed by a key another chain handed over to verifies
    when the hand-over is known; signed by a key nobody handed over to, it fails."""
    new = Signer(Ed25519PrivateKey.generate())
    main = trail(8, rotate_at={4: new})
    late = build(4, signer=new, t0=T0, chain="a-late-replica")
    transitions = [main[3]]
    assert kind([*late, *main], transitions=transitions) is None
    assert kind([*late, *main]) == "unknown_key"
    stranger = build(4, signer=ATTACKER, t0=T0, chain="a-late-replica")
    assert kind([*stranger, *main], transitions=transitions) == "unknown_key"


def test_several_held_checkpoints_before_a_partial_start_each_need_a_proof() -> None:
    """Every kept checkpoint before the start is proven extended by its own proof."""
    records = trail(16)
    leaves = [leaf_hash(r["hash"]) for r in records[:11]]
    proofs = [
        {"from_size": m, "to_size": 11, "proof": [h.hex() for h in consistency_proof(m, leaves)]}
        for m in (3, 7)
    ]
    anchors = {
        "frontiers": {"main": frontier_before(records, 12)},
        "checkpoints": [records[3], records[7]],
    }
    assert kind(records[11:], consistency={"main": proofs}, **anchors) is None
    assert kind(records[11:], consistency={"main": proofs[1:]}, **anchors) == "inconsistent"


@pytest.mark.parametrize(
    ("field", "value"),
    [("signature", ["x"]), ("signature", None), ("interval_s", "600"), ("covers_seq", [1])],
)
def test_hostile_checkpoint_values_are_faults_not_crashes(field: str, value: Any) -> None:
    """A checkpoint field of the wrong type is a fault, never a crash."""
    records = trail()
    records[7]["details"][field] = value
    rechain(records, 7)
    assert kind(records) is not None


def test_hostile_timestamps_and_strings_are_faults_not_crashes() -> None:
    """A checkpoint time that is not text, and a lone surrogate, are faults, never crashes."""
    records = trail()
    records[7]["ts"] = 12
    rechain(records, 7)
    assert kind(records) is not None
    records = trail()
    records[2]["response_id"] = "\ud800"
    assert kind(records) == "malformed"
