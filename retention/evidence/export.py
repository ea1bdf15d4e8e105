"""Export the trail for auditors: the records of a time range, widened to the checkpoints that
anchor it (the one at or before its start, the first at or after its end), and a manifest
that gives, per chain, its ends and checkpoints, the Merkle frontier before a start past seq 1,
and consistency proofs from checkpoints the auditor already holds."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from retention.audit.merkle import Frontier, consistency_proof, leaf_hash
from retention.audit.signatures import public_pem
from retention.core.times import format_time
from retention.core.vocabulary import Event
from retention.evidence.signing_key import Signer
from retention.evidence.trailfile import CSV_COLUMNS
from retention.ledger.audit_writer import rebuild_frontier
from retention.ledger.models import AUDIT_EVENTS, AuditChain

E = AUDIT_EVENTS.c
PAGE = 5000


def _bounds(
    conn: Connection, chain: str, head: int, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """First and last seq to export for `chain`."""
    checkpoints = (E.chain == chain) & (E.event == Event.AUDIT_CHECKPOINT)
    first = 1
    if since is not None:  # a start needs a signed root for its frontier (none before roots)
        rooted = E.line.contains('"root_hash"')
        first = (
            conn.execute(select(func.max(E.seq)).where(checkpoints, rooted, E.ts <= since)).scalar()
            or 1
        )
    last = head
    if until is not None:
        last = (
            conn.execute(select(func.min(E.seq)).where(checkpoints, E.ts >= until)).scalar() or head
        )
    return first, last


def chain_bounds(
    conn: Connection, since: datetime | None = None, until: datetime | None = None
) -> dict[str, tuple[int, int]]:
    """Per chain, the first and last seq of the records a time range is widened to: from the
    checkpoint at or before `since` to the first one at or after `until`."""
    heads = conn.execute(
        select(AuditChain.name, AuditChain.head_seq).order_by(AuditChain.name)
    ).all()
    return {chain: _bounds(conn, chain, head, since, until) for chain, head in heads}


def iter_lines(conn: Connection, bounds: dict[str, tuple[int, int]]) -> Iterator[str]:
    """The JSON lines of each chain's seq range, chain by chain in seq order, a page at a time."""
    for chain, (first, last) in bounds.items():
        seq = first - 1
        while seq < last:
            page = conn.execute(
                select(E.seq, E.line)
                .where(E.chain == chain, E.seq > seq, E.seq <= last)
                .order_by(E.seq)
                .limit(PAGE)
            ).all()
            if not page:
                break
            for row in page:
                yield row.line
            seq = page[-1].seq


def frontiers(conn: Connection, bounds: dict[str, tuple[int, int]]) -> dict[str, Frontier]:
    """For each chain that starts past seq 1, the frontier of the records before its start."""
    return {
        chain: rebuild_frontier(conn, chain, first - 1)
        for chain, (first, _) in bounds.items()
        if first > 1
    }


def consistency(
    conn: Connection, bounds: dict[str, tuple[int, int]], held: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """RFC 9162 consistency proofs, per chain, from each checkpoint an auditor holds that lies
    before the export's start to the export's leading checkpoint, oldest first."""
    proofs: dict[str, list[dict[str, Any]]] = {}
    leaves: dict[str, list[bytes]] = {}
    for point in sorted(held, key=_seq_or_zero):
        chain = str(point.get("chain"))
        first = bounds.get(chain, (1, 0))[0]
        old_size = (point.get("details") or {}).get("covers_seq")
        if type(old_size) is not int or not 0 < old_size < first - 1:
            continue
        if chain not in leaves:
            hashes = select(E.hash).where(E.chain == chain, E.seq < first).order_by(E.seq)
            leaves[chain] = [leaf_hash(h) for h in conn.execute(hashes).scalars()]
        proof = consistency_proof(old_size, leaves[chain])
        proofs.setdefault(chain, []).append(
            {"from_size": old_size, "to_size": first - 1, "proof": [h.hex() for h in proof]}
        )
    return proofs


def _seq_or_zero(point: dict[str, Any]) -> int:
    """A held checkpoint's seq, for ordering (0 when it has none that is an int)."""
    seq = point.get("seq")
    return seq if type(seq) is int else 0


def render(lines: Iterator[str], fmt: str) -> Iterator[str]:
    """The export's text in `fmt` (jsonl, or csv with the exact record in its last column)."""
    if fmt == "jsonl":
        for line in lines:
            yield line + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        record = json.loads(line)
        writer.writerow([*(record.get(c) for c in CSV_COLUMNS[:-1]), line])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


class ManifestBuilder:
    """Collects what the manifest says about each chain while the export is written."""

    def __init__(self) -> None:
        self.chains: dict[str, dict[str, Any]] = {}
        self.digest = hashlib.sha256()

    def track(self, lines: Iterator[str]) -> Iterator[str]:
        """Pass `lines` through, accounting for each."""
        for line in lines:
            self.see(line)
            yield line

    def see(self, line: str) -> None:
        """Account for one exported record."""
        record = json.loads(line)
        entry = self.chains.setdefault(
            record["chain"],
            {
                "first_seq": record["seq"],
                "first_hash": record["hash"],
                "records": 0,
                "checkpoints": [],
            },
        )
        entry.update(last_seq=record["seq"], last_hash=record["hash"])
        entry["records"] += 1
        if record["event"] == Event.AUDIT_CHECKPOINT:
            details = record["details"]
            entry["checkpoints"].append(
                {
                    "seq": record["seq"],
                    "ts": record["ts"],
                    "covers_seq": details["covers_seq"],
                    "signature": details["signature"],
                }
            )

    def build(
        self,
        *,
        fmt: str,
        file: str,
        signer: Signer | None,
        since: datetime | None,
        until: datetime | None,
        now: datetime,
        starts: dict[str, Frontier],
        proofs: dict[str, list[dict[str, Any]]],
        transitions: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The manifest."""
        for chain, frontier in starts.items():
            if chain in self.chains:
                self.chains[chain]["frontier"] = {
                    "size": frontier.size,
                    "hashes": frontier.to_hex(),
                }
        for chain, chain_proofs in proofs.items():
            if chain in self.chains:  # the latest held checkpoint's, then every one's
                self.chains[chain]["consistency"] = chain_proofs[-1]
                self.chains[chain]["consistency_proofs"] = chain_proofs
        return {
            "format": fmt,
            "file": file,
            "sha256": self.digest.hexdigest(),
            "generated_at": format_time(now),
            "range": {"since": format_time(since), "until": format_time(until)},
            "chains": self.chains,
            "public_key": public_pem(signer.public) if signer else None,
            "key_fingerprint": signer.fingerprint if signer else None,
            "key_transitions": transitions,
        }
