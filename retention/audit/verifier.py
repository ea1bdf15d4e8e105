"""Verify an audit trail: hashes, order, links, signed checkpoints, truncation, time gaps.

Pure: records and keys in, a Verdict out. Checks, in trail order, stopping at the first fault:
`modified` (hash mismatch), `missing` (a seq absent), `reordered` (a seq out of place),
`broken_link` (prev_hash is not the previous hash), `checkpoint_mismatch` (a checkpoint signs
another head than the one before it), `forged_signature`, `reused_signature`, `unknown_key`,
`checkpoint_chain` (prev_signature is not the previous checkpoint's), `missing_checkpoint` (no
checkpoint for over twice the interval while the daemon ran), then at the end `truncated` or
`diverged` against the expected heads (manifest or ledger) and trusted checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from retention.audit.chain import GENESIS, record_hash
from retention.audit.checkpoint import signed_message
from retention.audit.signing import fingerprint, verify_signature


@dataclass(frozen=True, slots=True)
class Fault:
    """The first thing wrong with the trail."""

    kind: str
    chain: str | None
    seq: int | None
    detail: str

    def __str__(self) -> str:
        where = f"chain {self.chain} seq {self.seq}: " if self.chain is not None else ""
        return f"{where}{self.kind}: {self.detail}"


@dataclass
class ChainState:
    """What has been read of one chain so far."""

    first_seq: int | None = None
    first_hash: str | None = None
    last_seq: int = 0
    last_hash: str = GENESIS
    records: int = 0
    checkpoints: int = 0
    last_signature: str | None = None
    last_checkpoint_ts: str | None = None
    stopped_since_checkpoint: bool = False


@dataclass
class Verdict:
    """The outcome of a verification."""

    fault: Fault | None = None
    records: int = 0
    chains: dict[str, ChainState] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        """Whether no fault was found."""
        return self.fault is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "sound": self.sound,
            "records": self.records,
            "fault": None
            if self.fault is None
            else {
                "kind": self.fault.kind,
                "chain": self.fault.chain,
                "seq": self.fault.seq,
                "detail": self.fault.detail,
                "message": str(self.fault),
            },
            "chains": {
                name: {
                    "first_seq": c.first_seq,
                    "first_hash": c.first_hash,
                    "last_seq": c.last_seq,
                    "last_hash": c.last_hash,
                    "records": c.records,
                    "checkpoints": c.checkpoints,
                }
                for name, c in self.chains.items()
            },
            "warnings": self.warnings,
        }


@dataclass
class Verifier:
    """Checks records one by one; `finish()` checks the ends."""

    public_key: Ed25519PublicKey | None = None
    present: set[tuple[str, int]] = field(default_factory=set)
    verdict: Verdict = field(default_factory=Verdict)
    signatures: set[str] = field(default_factory=set)

    def check(self, record: Any) -> Fault | None:
        """The fault in `record`, given those before it, if any."""
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("seq"), int)
            or "hash" not in record
            or "chain" not in record
        ):
            return Fault("malformed", None, None, "a line is not an audit record")
        chain, seq = str(record["chain"]), record["seq"]
        state = self.verdict.chains.setdefault(chain, ChainState())
        if record_hash({k: v for k, v in record.items() if k != "hash"}) != record["hash"]:
            return Fault("modified", chain, seq, "the record does not match its hash")
        if state.first_seq is not None and seq != state.last_seq + 1:
            expected = state.last_seq + 1
            kind = (
                "reordered"
                if (chain, expected) in self.present or seq <= state.last_seq
                else "missing"
            )
            return Fault(kind, chain, expected, f"expected seq {expected}, found seq {seq}")
        if state.first_seq is None and seq == 1 and record.get("prev_hash") != GENESIS:
            return Fault("broken_link", chain, seq, "the first record must follow 64 zeros")
        if state.first_seq is not None and record.get("prev_hash") != state.last_hash:
            return Fault("broken_link", chain, seq, "prev_hash is not the previous record's hash")
        fault = (
            self._checkpoint(record, state) if record.get("event") == "audit.checkpoint" else None
        )
        if fault:
            return fault
        if record.get("event") in ("daemon.stopped", "daemon.started"):
            state.stopped_since_checkpoint = True  # downtime is no missing checkpoint
        self._advance(state, record)
        return None

    def _advance(self, state: ChainState, record: dict[str, Any]) -> None:
        """Move the chain's head past `record`."""
        if state.first_seq is None:
            state.first_seq, state.first_hash = record["seq"], record["hash"]
        state.last_seq, state.last_hash = record["seq"], record["hash"]
        state.records += 1
        self.verdict.records += 1

    def _checkpoint(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """Check a checkpoint's claims and signature."""
        chain, seq = str(record["chain"]), record["seq"]
        details = record.get("details") or {}
        signature = details.get("signature", "")
        if details.get("covers_seq") != seq - 1 or details.get("covers_hash") != record.get(
            "prev_hash"
        ):
            return Fault(
                "checkpoint_mismatch",
                chain,
                seq,
                "the checkpoint signs another head than the record before it",
            )
        if (
            state.last_signature is not None
            and details.get("prev_signature") != state.last_signature
        ):
            return Fault(
                "checkpoint_chain",
                chain,
                seq,
                "prev_signature is not the previous checkpoint's signature",
            )
        if signature in self.signatures:
            return Fault("reused_signature", chain, seq, "this signature was used before")
        gap = _gap(state, record)
        if gap:
            return gap
        if self.public_key is not None:
            if details.get("key_fingerprint") != fingerprint(self.public_key):
                return Fault("unknown_key", chain, seq, "signed by another key than the one given")
            message = signed_message(details, chain=chain, ts=record.get("ts", ""))
            if not verify_signature(self.public_key, signature, message):
                return Fault("forged_signature", chain, seq, "the signature does not verify")
        self.signatures.add(signature)
        state.checkpoints += 1
        state.last_signature = signature
        state.last_checkpoint_ts = record.get("ts")
        state.stopped_since_checkpoint = False
        return None


def _gap(state: ChainState, record: dict[str, Any]) -> Fault | None:
    """`missing_checkpoint` when checkpoints are further apart than twice their interval."""
    interval = (record.get("details") or {}).get("interval_s")
    if state.last_checkpoint_ts is None or not interval or state.stopped_since_checkpoint:
        return None
    gap = (_when(record["ts"]) - _when(state.last_checkpoint_ts)).total_seconds()
    if gap > 2 * interval:
        return Fault(
            "missing_checkpoint",
            str(record["chain"]),
            record["seq"],
            f"no checkpoint between {state.last_checkpoint_ts} and {record['ts']}",
        )
    return None


def _when(ts: str) -> datetime:
    """An audit timestamp as a datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def verify_records(
    records: Iterable[dict[str, Any]],
    *,
    public_key: Ed25519PublicKey | None = None,
    expected_heads: dict[str, tuple[int, str]] | None = None,
    trusted: Iterable[dict[str, Any]] = (),
) -> Verdict:
    """Verify a whole trail (in file order) and its ends; the Verdict names the first fault."""
    items = list(records)
    verifier = Verifier(
        public_key=public_key,
        present={
            (str(r.get("chain")), r["seq"])
            for r in items
            if isinstance(r, dict) and isinstance(r.get("seq"), int)
        },
    )
    verdict = verifier.verdict
    if public_key is None:
        verdict.warnings.append("checkpoint signatures not checked: no public key given")
    for record in items:
        fault = verifier.check(record)
        if fault:
            verdict.fault = fault
            return verdict
    hashes = {(str(r["chain"]), r["seq"]): r["hash"] for r in items}
    verdict.fault = _ends(verdict, expected_heads or {}, trusted, hashes)
    return verdict


def _ends(
    verdict: Verdict,
    expected: dict[str, tuple[int, str]],
    trusted: Iterable[dict[str, Any]],
    hashes: dict[tuple[str, int], str],
) -> Fault | None:
    """Truncation against expected heads and checkpoints kept elsewhere."""
    for chain, (seq, head) in sorted(expected.items()):
        state = verdict.chains.get(chain, ChainState())
        if state.last_seq < seq:
            return Fault(
                "truncated",
                chain,
                state.last_seq + 1,
                f"the trail ends at seq {state.last_seq}; it should reach {seq}",
            )
        if state.last_seq == seq and state.last_hash != head:
            return Fault("diverged", chain, seq, "the last record is not the expected one")
    for point in trusted:
        chain, seq = str(point.get("chain")), point.get("seq")
        state = verdict.chains.get(chain, ChainState())
        if not isinstance(seq, int) or state.last_seq < seq:
            return Fault(
                "truncated",
                chain,
                state.last_seq + 1,
                f"the trail ends before the trusted checkpoint at seq {seq}",
            )
        if (chain, seq) in hashes and hashes[(chain, seq)] != point.get("hash"):
            return Fault("diverged", chain, seq, "differs from the trusted checkpoint")
    return None
