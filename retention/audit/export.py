"""Export the trail for auditors: the records of a time range, widened to the checkpoints that
anchor it (the one at or before its start, the first at or after its end), and a manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from retention.audit.signing import Signer, public_pem
from retention.core.times import format_time
from retention.ledger.models import AuditChain, AuditEvent

E = AuditEvent.__table__.c
CSV_COLUMNS = (
    "chain",
    "seq",
    "ts",
    "event",
    "response_id",
    "provider",
    "policy",
    "http_status",
    "hash",
    "record",
)
PAGE = 5000


def _bounds(
    conn: Connection, chain: str, head: int, since: datetime | None, until: datetime | None
) -> tuple[int, int]:
    """First and last seq to export for `chain`."""
    checkpoints = (E.chain == chain) & (E.event == "audit.checkpoint")
    first = 1
    if since is not None:
        first = (
            conn.execute(select(func.max(E.seq)).where(checkpoints, E.ts <= since)).scalar() or 1
        )
    last = head
    if until is not None:
        last = (
            conn.execute(select(func.min(E.seq)).where(checkpoints, E.ts >= until)).scalar() or head
        )
    return first, last


def iter_lines(
    conn: Connection, since: datetime | None = None, until: datetime | None = None
) -> Iterator[str]:
    """The exported records' JSON lines, chain by chain in seq order."""
    heads = conn.execute(
        select(AuditChain.name, AuditChain.head_seq).order_by(AuditChain.name)
    ).all()
    for chain, head in heads:
        first, last = _bounds(conn, chain, head, since, until)
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
        if record["event"] == "audit.checkpoint":
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
    ) -> dict[str, Any]:
        """The manifest."""
        return {
            "format": fmt,
            "file": file,
            "sha256": self.digest.hexdigest(),
            "generated_at": format_time(now),
            "range": {"since": format_time(since), "until": format_time(until)},
            "chains": self.chains,
            "public_key": public_pem(signer.public) if signer else None,
            "key_fingerprint": signer.fingerprint if signer else None,
        }
