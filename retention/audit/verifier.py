"""Verify an audit trail against the host's own operator. Pure: records, keys and checkpoints
kept elsewhere in, a Verdict out; it imports the standard library and `cryptography` only.

Records are read once, in trail order, and the first fault stops the check:
- per record: `malformed`, `modified` (hash mismatch), `missing` / `reordered` (seq out of
  place), `broken_link` (prev_hash is not the previous hash), `unanchored_start` (a chain that
  starts past seq 1 without a leading checkpoint and a frontier folding to its signed root);
- per checkpoint: `checkpoint_mismatch` (signs another head than the record before it),
  `checkpoint_chain` (prev_signature is not the previous checkpoint's), `reused_signature`,
  `root_mismatch` (its Merkle root is not the root of the records it covers), `unknown_key`
  (signed by a key the trusted one did not hand over to), `forged_signature`;
- at the end, per chain: `unsigned_chain` (no checkpoint by the trusted key), `unanchored`
  (its last record is not covered by such a checkpoint), `truncated` / `diverged` against the
  expected heads, and `truncated` / `inconsistent` against trusted and witnessed checkpoints,
  which the trail must contain unchanged or provably extend (a consistency proof).
With `hash_only` only hashes, order and links are checked (and the verdict says so). In
ledger mode (`strict_ends=False`) a tail not yet covered by a checkpoint is a warning.
A trail kept in several files (rotated audit files, oldest first) is verified as one with
`verify_parts`: a fault names its file, and a gap between two files names both; files given
out of order are `out_of_order`; records a file repeats are skipped once proven the same.
Checkpoints further apart than twice their interval are a warning: one-shot sweeps run from
cron sign only when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from retention.audit.checkpoint_message import (
    OPTIONAL_SIGNED_FIELDS,
    SIGNED_FIELDS,
    signed_message,
)
from retention.audit.hashchain import GENESIS, record_hash
from retention.audit.merkle import Frontier, leaf_hash, verify_consistency
from retention.audit.signatures import fingerprint, load_public_or_none, verify_signature
from retention.core.vocabulary import Event

CHECKPOINT = Event.AUDIT_CHECKPOINT
DETAIL_FIELDS = {*SIGNED_FIELDS, *OPTIONAL_SIGNED_FIELDS, "signature"} - {"chain", "ts"}


@dataclass(frozen=True, slots=True)
class Fault:
    """The first thing wrong with the trail."""

    kind: str
    chain: str | None
    seq: int | None
    detail: str
    file: str | None = None  # the file it is in, when the trail was read from several

    def __str__(self) -> str:
        where = f"chain {self.chain} seq {self.seq}: " if self.chain is not None else ""
        return f"{f'{self.file}: ' if self.file else ''}{where}{self.kind}: {self.detail}"


@dataclass
class ChainState:
    """What has been read of one chain so far."""

    first_seq: int | None = None
    first_hash: str | None = None
    last_seq: int = 0
    last_hash: str = GENESIS
    records: int = 0
    checkpoints: int = 0
    covered_seq: int = 0  # the last checkpoint verified with a trusted key
    frontier: Frontier | None = None  # None while the tree's left part is unknown
    rooted: bool = False  # a checkpoint of this chain signed a Merkle root
    first_root: str | None = None  # the leading checkpoint's root, for consistency proofs
    key: str | None = None  # fingerprint that must sign the next checkpoint
    last_signature: str | None = None
    last_checkpoint_ts: str | None = None
    stopped_since_checkpoint: bool = False


@dataclass
class Verdict:
    """The outcome of a verification."""

    fault: Fault | None = None
    records: int = 0
    hash_only: bool = False
    chains: dict[str, ChainState] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        """Whether no fault was found."""
        return self.fault is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        fault = self.fault
        return {
            "sound": self.sound,
            "signatures_checked": not self.hash_only,
            "records": self.records,
            "fault": None
            if fault is None
            else {
                "kind": fault.kind,
                "chain": fault.chain,
                "seq": fault.seq,
                "detail": fault.detail,
                "file": fault.file,
                "message": str(fault),
            },
            "chains": {
                name: {
                    "first_seq": c.first_seq,
                    "first_hash": c.first_hash,
                    "last_seq": c.last_seq,
                    "last_hash": c.last_hash,
                    "records": c.records,
                    "checkpoints": c.checkpoints,
                    "covered_seq": c.covered_seq,
                }
                for name, c in self.chains.items()
            },
            "warnings": self.warnings,
        }


@dataclass
class Anchors:
    """What the verifier trusts besides the records: the pinned key, and what the export's
    manifest offers that the signatures then vouch for (frontiers, proofs, extra keys)."""

    key: Ed25519PublicKey | None = None
    frontiers: dict[str, Frontier] = field(default_factory=dict)
    consistency: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    expected_heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # trusted and witnessed
    transitions: list[dict[str, Any]] = field(default_factory=list)  # key hand-overs, any chain


@dataclass
class Verifier:
    """Checks records one by one; `finish()` checks the ends."""

    anchors: Anchors = field(default_factory=Anchors)
    strict_ends: bool = True
    located: Callable[[str, int], bool] | None = None  # is (chain, seq) anywhere in the input?
    verdict: Verdict = field(default_factory=Verdict)
    signatures: set[str] = field(default_factory=set)
    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    watched: dict[tuple[str, int], str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verdict.hash_only = self.anchors.key is None
        if self.anchors.key is not None:
            self.keys[fingerprint(self.anchors.key)] = self.anchors.key
            self._follow_transitions()
        for point in self.anchors.checkpoints:
            if isinstance(point.get("seq"), int):
                self.watched[(str(point.get("chain")), point["seq"])] = None

    def _follow_transitions(self) -> None:
        """The keys the pinned key handed over to, directly or in turn, on any chain: each
        hand-over is a checkpoint whose signature, by a key already trusted, names the next."""
        grown = True
        while grown:
            grown = False
            for point in self.anchors.transitions:
                try:
                    following = _handed_over(point, self.keys)
                except HOSTILE:
                    continue
                if following is not None:
                    self.keys[fingerprint(following)] = following
                    grown = True

    @property
    def pinned(self) -> str | None:
        """The trusted key's fingerprint; None in hash-only mode."""
        return None if self.anchors.key is None else fingerprint(self.anchors.key)

    def check(self, record: Any) -> Fault | None:
        """The fault in `record`, given those before it, if any."""
        if (
            not isinstance(record, dict)
            or type(record.get("seq")) is not int  # a bool is an int to isinstance
            or record["seq"] < 1
            or not isinstance(record.get("hash"), str)
            or not isinstance(record.get("chain"), str)
        ):
            return Fault("malformed", None, None, "a line is not an audit record")
        chain, seq = record["chain"], record["seq"]
        state = self.verdict.chains.setdefault(chain, ChainState(key=self.pinned))
        if record_hash({k: v for k, v in record.items() if k != "hash"}) != record["hash"]:
            return Fault("modified", chain, seq, "the record does not match its hash")
        fault = self._place(record, state)
        if fault is None and record.get("event") == CHECKPOINT:
            fault = self._checkpoint(record, state)
        if fault:
            return fault
        if record.get("event") in (Event.DAEMON_STOPPED, Event.DAEMON_STARTED):
            state.stopped_since_checkpoint = True  # downtime is no missing checkpoint
        self._advance(state, record)
        return None

    def _place(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """Order and links: the record follows the one before it, or starts the chain well."""
        chain, seq = record["chain"], record["seq"]
        if state.first_seq is None:
            return self._start(record, state)
        if seq != state.last_seq + 1:
            expected = state.last_seq + 1
            later = self.located is not None and self.located(chain, expected)
            kind = "reordered" if later or seq <= state.last_seq else "missing"
            return Fault(kind, chain, expected, f"expected seq {expected}, found seq {seq}")
        if record.get("prev_hash") != state.last_hash:
            return Fault("broken_link", chain, seq, "prev_hash is not the previous record's hash")
        return None

    def _start(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """The first record read of a chain: seq 1, or a leading checkpoint and its frontier."""
        chain, seq = record["chain"], record["seq"]
        if seq == 1:
            if record.get("prev_hash") != GENESIS:
                return Fault("broken_link", chain, seq, "the first record must follow 64 zeros")
            state.frontier = Frontier()
            return None
        if self.verdict.hash_only:
            return None  # links only: nothing to anchor the start to
        if record.get("event") != CHECKPOINT:
            return Fault(
                "unanchored_start", chain, seq, "the chain starts past seq 1 without a checkpoint"
            )
        frontier = self.anchors.frontiers.get(chain)
        if frontier is None or frontier.size != seq - 1:
            return Fault(
                "unanchored_start",
                chain,
                seq,
                f"no frontier of the first {seq - 1} records to start the Merkle tree from",
            )
        state.frontier = frontier.copy()
        state.first_root = state.frontier.root().hex()
        return None

    def _advance(self, state: ChainState, record: dict[str, Any]) -> None:
        """Move the chain's head past `record`."""
        if state.first_seq is None:
            state.first_seq, state.first_hash = record["seq"], record["hash"]
        state.last_seq, state.last_hash = record["seq"], record["hash"]
        if state.frontier is not None:
            state.frontier.append(leaf_hash(record["hash"]))
        state.records += 1
        self.verdict.records += 1
        where = (record["chain"], record["seq"])
        if where in self.watched:
            self.watched[where] = record["hash"]

    def _checkpoint(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """Check a checkpoint's claims, root and signature."""
        chain, seq = record["chain"], record["seq"]
        details = record.get("details")
        if not isinstance(details, dict):
            return Fault("malformed", chain, seq, "a checkpoint without details")
        signature = details.get("signature", "")
        unsigned = set(details) - DETAIL_FIELDS
        if unsigned:
            return Fault("malformed", chain, seq, f"unsigned checkpoint fields: {sorted(unsigned)}")
        if details.get("covers_seq") != seq - 1 or details.get("covers_hash") != record.get(
            "prev_hash"
        ):
            return Fault(
                "checkpoint_mismatch",
                chain,
                seq,
                "the checkpoint signs another head than the record before it",
            )
        if state.last_signature is not None and details.get("prev_signature") != (
            state.last_signature
        ):
            return Fault(
                "checkpoint_chain",
                chain,
                seq,
                "prev_signature is not the previous checkpoint's signature",
            )
        if signature in self.signatures:
            return Fault("reused_signature", chain, seq, "this signature was used before")
        fault = self._root(record, state) or self._signature(record, state)
        if fault:
            return fault
        self._gap(state, record)
        self.signatures.add(signature)
        state.checkpoints += 1
        state.last_signature = signature
        state.last_checkpoint_ts = record.get("ts")
        state.stopped_since_checkpoint = False
        return None

    def _root(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """A checkpoint's `root_hash` must be the root of the records it covers. A partial
        chain's leading checkpoint must have one (its frontier is proven by nothing else), and
        once a chain's checkpoints carry roots, every later one must."""
        chain, seq = record["chain"], record["seq"]
        claimed = record["details"].get("root_hash")
        leading = state.first_seq is None and seq > 1
        if claimed is None:
            if leading and not self.verdict.hash_only:
                return Fault("unanchored_start", chain, seq, "the leading checkpoint signs no root")
            if state.rooted:
                return Fault("root_mismatch", chain, seq, "a checkpoint without a root after roots")
            return None  # written before Merkle roots
        state.rooted = True
        if state.frontier is None:
            return None  # hash-only from a partial start
        if state.frontier.root().hex() != claimed:
            kind = "unanchored_start" if leading else "root_mismatch"
            return Fault(kind, chain, seq, "the root is not the records'")
        return None

    def _signature(self, record: dict[str, Any], state: ChainState) -> Fault | None:
        """Signed by the key in force on this chain; a signed transition hands over to the next."""
        if self.verdict.hash_only:
            return None
        chain, seq, details = record["chain"], record["seq"], record["details"]
        if state.checkpoints == 0 and details.get("key_fingerprint") in self.keys:
            state.key = details["key_fingerprint"]  # a chain begun after a key rotation
        if details.get("key_fingerprint") != state.key or state.key not in self.keys:
            return Fault("unknown_key", chain, seq, "signed by another key than the trusted one")
        message = signed_message(details, chain=chain, ts=str(record.get("ts", "")))
        if not verify_signature(self.keys[state.key], details.get("signature", ""), message):
            return Fault("forged_signature", chain, seq, "the signature does not verify")
        if "next_key_fingerprint" in details:
            following = load_public_or_none(details.get("next_public_key"))
            if following is None or fingerprint(following) != details["next_key_fingerprint"]:
                return Fault("unknown_key", chain, seq, "the next key does not match its name")
            self.keys[details["next_key_fingerprint"]] = following
            state.key = details["next_key_fingerprint"]
        state.covered_seq = seq
        return None

    def _gap(self, state: ChainState, record: dict[str, Any]) -> None:
        """Warn when checkpoints are further apart than twice their interval while running."""
        interval = record["details"].get("interval_s")
        if state.last_checkpoint_ts is None or not interval or state.stopped_since_checkpoint:
            return
        try:
            gap = (_when(record["ts"]) - _when(state.last_checkpoint_ts)).total_seconds()
        except (TypeError, ValueError):
            return
        if gap > 2 * interval:
            self.verdict.warnings.append(
                f"chain {record['chain']}: no checkpoint between {state.last_checkpoint_ts} "
                f"and {record['ts']} (the writer did not run, or ran only as one-shot commands)"
            )

    def finish(self) -> Fault | None:
        """The ends: every chain signed to its last record, expected heads reached, trusted and
        witnessed checkpoints contained unchanged or provably extended."""
        if not self.verdict.records:
            return Fault("truncated", None, None, "the trail holds no records")
        return self._coverage() or self._heads() or self._kept_checkpoints()

    def _coverage(self) -> Fault | None:
        """Each chain is covered to its last record by a checkpoint of the trusted key."""
        if self.verdict.hash_only:
            self.verdict.warnings.append(
                "hash-only: hashes and links were checked, signatures and coverage were not"
            )
            return None
        for name, state in sorted(self.verdict.chains.items()):
            if state.covered_seq == state.last_seq:
                continue
            if state.covered_seq == 0:
                kind, detail = "unsigned_chain", "no checkpoint signed by the trusted key"
            else:
                kind, detail = "unanchored", f"records after seq {state.covered_seq} are unsigned"
            if not self.strict_ends:
                self.verdict.warnings.append(
                    f"chain {name}: seq {state.covered_seq + 1} to {state.last_seq} not yet "
                    "covered by a checkpoint"
                )
                continue
            return Fault(kind, name, state.covered_seq + 1, detail)
        return None

    def _heads(self) -> Fault | None:
        """Truncation against the heads the manifest or the ledger expects."""
        for chain, (seq, head) in sorted(self.anchors.expected_heads.items()):
            state = self.verdict.chains.get(chain, ChainState())
            if state.last_seq < seq:
                return Fault(
                    "truncated",
                    chain,
                    state.last_seq + 1,
                    f"the trail ends at seq {state.last_seq}; it should reach {seq}",
                )
            if state.last_seq == seq and state.last_hash != head:
                return Fault("diverged", chain, seq, "the last record is not the expected one")
        return None

    def _kept_checkpoints(self) -> Fault | None:
        """Every trusted or witnessed checkpoint is in the trail unchanged, or the trail
        provably extends the tree it signed."""
        for point in self.anchors.checkpoints:
            fault = self._kept(point)
            if fault:
                return fault
        return None

    def _kept(self, point: dict[str, Any]) -> Fault | None:
        """One kept checkpoint against the trail."""
        chain, seq = str(point.get("chain")), point.get("seq")
        state = self.verdict.chains.get(chain)
        if not isinstance(seq, int) or state is None or state.last_seq < seq:
            end = state.last_seq if state else 0
            return Fault(
                "truncated", chain, end + 1, f"the trail ends before the kept checkpoint at {seq}"
            )
        assert state.first_seq is not None
        if seq >= state.first_seq:
            if self.watched.get((chain, seq)) != point.get("hash"):
                return Fault("inconsistent", chain, seq, "differs from the kept checkpoint")
            return None
        return self._extends(point, state)

    def _extends(self, point: dict[str, Any], state: ChainState) -> Fault | None:
        """A kept checkpoint before the trail's start: one of the manifest's consistency proofs
        must lead from its signed root to the root the trail's leading checkpoint signed."""
        chain, seq = str(point.get("chain")), point.get("seq")
        details = as_dict(point.get("details"))
        assert state.first_seq is not None
        old_root, new_root = details.get("root_hash"), state.first_root
        for proof in self.anchors.consistency.get(chain, []):
            if (
                proof.get("from_size") == details.get("covers_seq")
                and proof.get("to_size") == state.first_seq - 1
                and isinstance(old_root, str)
                and isinstance(new_root, str)
                and verify_consistency(
                    proof["from_size"],
                    proof["to_size"],
                    bytes.fromhex(old_root),
                    bytes.fromhex(new_root),
                    [bytes.fromhex(h) for h in proof.get("proof", [])],
                )
            ):
                return None
        return Fault(
            "inconsistent",
            chain,
            seq,
            "the trail starts after the kept checkpoint and does not prove it extends it",
        )


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (hostile input has any shape)."""
    return value if isinstance(value, dict) else {}


def _handed_over(
    point: dict[str, Any], keys: dict[str, Ed25519PublicKey]
) -> Ed25519PublicKey | None:
    """The next key a checkpoint hands over to, when a trusted key signed it and it is new."""
    details = point.get("details") if isinstance(point, dict) else None
    if not isinstance(details, dict) or details.get("next_key_fingerprint") in keys:
        return None
    signer = keys.get(details.get("key_fingerprint"))  # type: ignore[arg-type]
    following = load_public_or_none(details.get("next_public_key"))
    if signer is None or following is None:
        return None
    if fingerprint(following) != details.get("next_key_fingerprint"):
        return None
    message = signed_message(details, chain=str(point.get("chain")), ts=str(point.get("ts")))
    if not verify_signature(signer, str(details.get("signature", "")), message):
        return None
    return following


def _when(ts: str) -> datetime:
    """An audit timestamp as a datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def verify_records(
    records: Iterable[Any],
    anchors: Anchors | None = None,
    *,
    strict_ends: bool = True,
    located: Callable[[str, int], bool] | None = None,
) -> Verdict:
    """Verify a whole trail (in file order) and its ends; the Verdict names the first fault."""
    verifier = Verifier(anchors or Anchors(), strict_ends=strict_ends, located=located)
    for record in records:
        fault = _guarded(verifier.check, record)
        if fault:
            verifier.verdict.fault = fault
            return verifier.verdict
    verifier.verdict.fault = _guarded(lambda _: verifier.finish(), None)
    return verifier.verdict


def verify_parts(
    parts: Iterable[tuple[str, Iterable[Any]]],
    anchors: Anchors | None = None,
    *,
    strict_ends: bool = True,
    located: Callable[[str, int], bool] | None = None,
) -> Verdict:
    """Verify a trail kept in named parts (rotated files, oldest first) as one trail: each
    chain goes on from the part where it was last seen. A fault names its part; a chain that
    skips seqs between two parts is `missing`, naming both; one that starts before the records
    verified, or whose missing seqs are in a later part, is `out_of_order`. A part that repeats
    records already verified (a chain written again after the rotation state or the live file
    was lost) has them skipped with a warning, once they lead, unchanged, to the chain's last
    record verified; other records at those seqs are `diverged`."""
    verifier = Verifier(anchors or Anchors(), strict_ends=strict_ends, located=located)
    seams = _Seams(verifier)
    for name, records in parts:
        seams.part, seams.started = name, set()
        for record in records:
            fault = seams.take(record)
            if fault:
                verifier.verdict.fault = replace(fault, file=fault.file or name)
                return verifier.verdict
        for chain in seams.started:
            seams.seen_in[chain] = name
    verifier.verdict.fault = seams.unfinished() or _guarded(lambda _: verifier.finish(), None)
    return verifier.verdict


ORDER = "give the files oldest first, each once (rotated files by their number, the live file last)"


@dataclass
class _Repeat:
    """Records of a chain that a part repeats from the parts before it, from seq `first`."""

    part: str  # where the repeat starts
    before: str  # the part the chain was last seen in
    first: int
    next: int  # the seq expected next
    last_hash: str | None = None  # the hash of the repeated record before it


@dataclass
class _Seams:
    """Where the parts meet: each chain's first record in a part follows its last one in the
    part before, or starts a repeat of records already verified."""

    verifier: Verifier
    part: str = ""
    started: set[str] = field(default_factory=set)  # chains seen in this part
    seen_in: dict[str, str] = field(default_factory=dict)  # chain -> part of its last record
    repeats: dict[str, _Repeat] = field(default_factory=dict)  # chain -> its open repeat

    def take(self, record: Any) -> Fault | None:
        """The fault in `record`, given the parts and records before it."""
        if isinstance(record, dict) and isinstance(record.get("chain"), str):
            chain = record["chain"]
            if chain not in self.started and type(record.get("seq")) is int:
                self.started.add(chain)
                fault = self._seam(record)
                if fault:
                    return fault
            if chain in self.repeats:
                return _guarded(self._repeated, record)
        return _guarded(self.verifier.check, record)

    def _seam(self, record: dict[str, Any]) -> Fault | None:
        """A chain's first record in this part must follow its last one in the part before,
        or repeat verified records (the repeat is opened, and checked record by record)."""
        chain, seq = record["chain"], record["seq"]
        state = self.verifier.verdict.chains.get(chain)
        if chain in self.repeats or state is None or state.first_seq is None:
            return None
        if chain not in self.seen_in:
            return None
        last, before = state.last_seq, self.seen_in[chain]
        located = self.verifier.located
        if seq > last + 1 and located is not None and located(chain, last + 1):
            return Fault(
                "out_of_order",
                chain,
                seq,
                f"follows seq {last} in {before}, and seq {last + 1} is in a file given after "
                f"this one: {ORDER}",
            )
        if seq > last + 1:
            gap = (
                f"record {last + 1} is" if seq == last + 2 else f"records {last + 1}-{seq - 1} are"
            )
            return Fault(
                "missing",
                chain,
                seq,
                f"follows seq {last} in {before}: {gap} missing (a rotated file is missing "
                "between these two?)",
            )
        if seq < state.first_seq:
            return Fault(
                "out_of_order",
                chain,
                seq,
                f"the files given before this one start the chain at seq {state.first_seq}: "
                f"{ORDER}",
            )
        if seq <= last:
            self.repeats[chain] = _Repeat(self.part, before, seq, seq)
        return None

    def _repeated(self, record: dict[str, Any]) -> Fault | None:
        """One record of a repeat: sound, in order, linked to the one before; the repeat ends
        at the chain's last record verified, which it must be (then, by the hashes, every
        record repeated is the one verified at its seq)."""
        chain, seq = record["chain"], record["seq"]
        run, state = self.repeats[chain], self.verifier.verdict.chains[chain]
        span = f"seqs {run.first}-{state.last_seq}, verified up to {run.before}"
        if type(seq) is not int or not isinstance(record.get("hash"), str):
            return Fault("malformed", chain, None, "a line is not an audit record")
        if record_hash({k: v for k, v in record.items() if k != "hash"}) != record["hash"]:
            return Fault("modified", chain, seq, "the record does not match its hash")
        if seq != run.next:
            return Fault(
                "out_of_order",
                chain,
                seq,
                f"repeats {span}, but seq {seq} follows seq {run.next - 1}: a repeat of "
                f"records already verified must go on unchanged to seq {state.last_seq}",
            )
        if run.last_hash is not None and record.get("prev_hash") != run.last_hash:
            return Fault("broken_link", chain, seq, "prev_hash is not the previous record's hash")
        run.next, run.last_hash = seq + 1, record["hash"]
        if seq < state.last_seq:
            return None
        del self.repeats[chain]
        if record["hash"] != state.last_hash:
            return Fault(
                "diverged",
                chain,
                run.first,
                f"repeats {span}, with other records than those (seq {seq} differs)",
            )
        self.verifier.verdict.warnings.append(
            f"{run.part}: chain {chain} seq {run.first}-{seq}: the same records as in the files "
            "before it, skipped (written again after the rotation state or the live file was "
            "lost?)"
        )
        return None

    def unfinished(self) -> Fault | None:
        """A repeat the trail ends in: it never reached the chain's last record verified, so
        nothing shows the records repeated are those verified."""
        for chain, run in sorted(self.repeats.items()):
            last = self.verifier.verdict.chains[chain].last_seq
            return Fault(
                "out_of_order",
                chain,
                run.next,
                f"repeats seqs {run.first}-{run.next - 1}, verified up to {run.before}, and the "
                f"trail ends before the repeat reaches seq {last}: {ORDER}",
                file=run.part,
            )
        return None


# what a hostile value of a wrong type, an unencodable string or deep nesting can raise
HOSTILE = (TypeError, ValueError, KeyError, AttributeError, UnicodeError, RecursionError)


def _guarded(check: Callable[[Any], Fault | None], record: Any) -> Fault | None:
    """A check whose crash on a hostile record is that record's fault, not the verifier's."""
    try:
        return check(record)
    except HOSTILE as exc:
        where = record if isinstance(record, dict) else {}
        chain, seq = where.get("chain"), where.get("seq")
        return Fault(
            "malformed",
            chain if isinstance(chain, str) else None,
            seq if type(seq) is int else None,
            f"a value of the wrong kind ({type(exc).__name__})",
        )
