"""The verifier against forgeries: a verifier that passes forged input is worse than none."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.chain import GENESIS, seal
from retention.audit.checkpoint import signed_message
from retention.audit.signing import Signer
from retention.audit.verifier import verify_records

T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)
SIGNER = Signer(Ed25519PrivateKey.generate())


def _ts(minutes: float) -> str:
    """An audit timestamp `minutes` after T0."""
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    n: int = 12,
    *,
    every: int = 4,
    step: float = 1.0,
    interval_s: int = 600,
    signer: Signer = SIGNER,
    events: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """A sound trail of n records, a signed checkpoint every `every` records."""
    records: list[dict[str, Any]] = []
    prev, last_sig = GENESIS, ""
    for seq in range(1, n + 1):
        ts = _ts(seq * step)
        if seq % every == 0:
            details = {
                "covers_seq": seq - 1,
                "covers_hash": prev,
                "prev_signature": last_sig,
                "key_fingerprint": signer.fingerprint,
                "interval_s": interval_s,
            }
            details["signature"] = signer.sign(signed_message(details, chain="main", ts=ts))
            last_sig = details["signature"]
            body = {"event": "audit.checkpoint", "ts": ts, "details": details}
        else:
            name = (events or {}).get(seq, "response.deleted")
            body = {"event": name, "ts": ts, "response_id": f"r{seq}", "http_status": 200}
        record = seal(body, chain="main", seq=seq, prev_hash=prev)
        prev = record["hash"]
        records.append(record)
    return records


def rehash(record: dict[str, Any]) -> None:
    """Recompute a record's hash as a forger would."""
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def rechain(records: list[dict[str, Any]], start: int) -> None:
    """Re-link and re-hash everything from index `start` on, as a thorough forger would."""
    for index in range(start, len(records)):
        if index:
            records[index]["prev_hash"] = records[index - 1]["hash"]
        rehash(records[index])


def kind(records: list[dict[str, Any]], **kw: Any) -> str | None:
    """The fault kind the verifier reports (None when sound)."""
    verdict = verify_records(records, public_key=SIGNER.public, **kw)
    return verdict.fault.kind if verdict.fault else None


def test_a_sound_trail_verifies() -> None:
    """Untouched, with checkpoints signed by the given key, the trail is sound."""
    verdict = verify_records(build(), public_key=SIGNER.public)
    assert verdict.sound and verdict.chains["main"].checkpoints == 3


def test_edited_field() -> None:
    """An edited field no longer matches its hash."""
    records = build()
    records[4]["response_id"] = "someone-else"
    assert kind(records) == "modified"


def test_deleted_line() -> None:
    """A deleted record is a missing seq, named."""
    records = build()
    del records[5]
    verdict = verify_records(records, public_key=SIGNER.public)
    assert verdict.fault and (verdict.fault.kind, verdict.fault.seq) == ("missing", 6)


def test_swapped_lines() -> None:
    """Two swapped records are reported as reordered."""
    records = build()
    records[5], records[6] = records[6], records[5]
    assert kind(records) == "reordered"


def test_record_edited_and_rehashed() -> None:
    """Re-hashing an edited record breaks the next record's link."""
    records = build()
    records[4]["response_id"] = "forged"
    rehash(records[4])
    assert kind(records) == "broken_link"


def test_whole_tail_rewritten_is_caught_by_the_signature() -> None:
    """Re-linking every record after an edit fools the hashes but not the next checkpoint."""
    records = build()
    records[4]["response_id"] = "forged"
    rechain(records, 4)
    assert kind(records) == "checkpoint_mismatch"


def test_tail_rewritten_with_checkpoint_claims_adjusted() -> None:
    """Editing the checkpoint's claims too leaves a signature that does not verify."""
    records = build()
    records[4]["response_id"] = "forged"
    rechain(records, 4)
    cp = records[7]
    cp["details"]["covers_hash"] = records[6]["hash"]
    rechain(records, 7)
    assert kind(records) == "forged_signature"


def test_truncated_tail_after_a_checkpoint() -> None:
    """A trail cut after a checkpoint is caught by the manifest's head or a trusted checkpoint."""
    full = build()
    cut = full[:8]
    assert kind(cut) is None, "nothing inside the cut trail is wrong"
    assert kind(cut, expected_heads={"main": (12, full[-1]["hash"])}) == "truncated"
    assert kind(cut, trusted=[full[11]]) == "truncated"


def test_altered_signature() -> None:
    """A checkpoint whose signature is altered (and the record re-hashed) fails."""
    records = build()
    sig = records[3]["details"]["signature"]
    records[3]["details"]["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    rechain(records, 3)
    assert kind(records) in ("forged_signature", "checkpoint_chain")


def test_reused_signature() -> None:
    """A later checkpoint carrying an earlier checkpoint's signature is refused."""
    records = build()
    records[7]["details"] = dict(
        records[3]["details"], covers_seq=7, covers_hash=records[6]["hash"]
    )
    rechain(records, 7)
    assert kind(records) in ("reused_signature", "checkpoint_chain")


def test_checkpoint_signed_by_another_key() -> None:
    """A trail signed by a forger's key does not pass with the real public key."""
    forged = build(signer=Signer(Ed25519PrivateKey.generate()))
    assert kind(forged) == "unknown_key"


def test_missing_checkpoints_are_named_by_time() -> None:
    """Checkpoints further apart than twice their interval: 'no checkpoint between T1 and T2'."""
    records = build(step=10, interval_s=600)  # checkpoints every 40 minutes, interval 10
    verdict = verify_records(records, public_key=SIGNER.public)
    assert verdict.fault and verdict.fault.kind == "missing_checkpoint"
    assert "no checkpoint between" in verdict.fault.detail


def test_downtime_is_not_a_missing_checkpoint() -> None:
    """A gap that spans a daemon restart is excused."""
    records = build(
        step=10,
        interval_s=600,
        events={5: "daemon.stopped", 6: "daemon.started", 9: "daemon.started"},
    )
    assert kind(records) is None


@pytest.mark.parametrize("junk", [None, 3, "text", {"seq": "1"}, {"chain": "x", "seq": 1}])
def test_junk_lines_are_faults_not_crashes(junk: Any) -> None:
    """Anything that is not a record is a fault."""
    assert kind([*build()[:2], junk]) in ("malformed", "modified")


def test_without_a_key_the_signatures_are_reported_unchecked() -> None:
    """No key: hashes still checked, and a warning says signatures were not."""
    verdict = verify_records(build())
    assert verdict.sound and verdict.warnings
