"""A forger's toolkit: build signed trails, and rewrite them as the host's operator could,
with or without the real signing key (tests only)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from retention.audit.checkpoint_message import signed_message
from retention.audit.hashchain import GENESIS, canonical, seal
from retention.audit.merkle import Frontier, leaf_hash
from retention.audit.signatures import public_pem
from retention.evidence.signing_key import Signer

Record = dict[str, Any]


def stamp(t0: datetime, minutes: float) -> str:
    """An audit timestamp `minutes` after `t0`."""
    return (t0 + timedelta(minutes=minutes)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_details(
    records: list[Record],
    *,
    signer: Signer,
    chain: str,
    ts: str,
    interval_s: int = 600,
    next_key: Signer | None = None,
    prev_signature: str = "",
) -> dict[str, Any]:
    """Signed details of a checkpoint appended after `records` (all of the chain so far)."""
    frontier = Frontier()
    frontier.extend(leaf_hash(r["hash"]) for r in records)
    details: dict[str, Any] = {
        "covers_seq": len(records),
        "covers_hash": records[-1]["hash"] if records else GENESIS,
        "root_hash": frontier.root().hex(),
        "prev_signature": prev_signature,
        "key_fingerprint": signer.fingerprint,
        "interval_s": interval_s,
    }
    if next_key is not None:
        details["next_key_fingerprint"] = next_key.fingerprint
        details["next_public_key"] = public_pem(next_key.public)
    details["signature"] = signer.sign(signed_message(details, chain=chain, ts=ts))
    return details


def build(
    n: int,
    *,
    signer: Signer,
    t0: datetime,
    every: int = 4,
    step: float = 1.0,
    interval_s: int = 600,
    chain: str = "main",
    events: dict[int, str] | None = None,
    rotate_at: dict[int, Signer] | None = None,
) -> list[Record]:
    """A sound trail of n records, a signed checkpoint every `every`-th seq (and at the end);
    `rotate_at` makes the checkpoint at that seq hand over to another key."""
    records: list[Record] = []
    last_sig = ""
    for seq in range(1, n + 1):
        ts = stamp(t0, seq * step)
        if seq % every == 0 or seq == n:
            following = (rotate_at or {}).get(seq)
            details = checkpoint_details(
                records,
                signer=signer,
                chain=chain,
                ts=ts,
                interval_s=interval_s,
                next_key=following,
                prev_signature=last_sig,
            )
            last_sig = details["signature"]
            body: Record = {"event": "audit.checkpoint", "ts": ts, "details": details}
            signer = following or signer
        else:
            name = (events or {}).get(seq, "response.deleted")
            body = {"event": name, "ts": ts, "response_id": f"r{seq}", "http_status": 200}
        prev = records[-1]["hash"] if records else GENESIS
        records.append(seal(body, chain=chain, seq=seq, prev_hash=prev))
    return records


def rehash(record: Record) -> None:
    """Recompute a record's hash, as anyone can."""
    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def rechain(records: list[Record], start: int = 0) -> None:
    """Renumber, re-link and re-hash from index `start` on, without any key."""
    for index in range(start, len(records)):
        record = records[index]
        if index:
            record["seq"] = records[index - 1]["seq"] + 1
            record["prev_hash"] = records[index - 1]["hash"]
        rehash(record)


def resign(records: list[Record], signer: Signer, start: int = 0) -> None:
    """Re-link, re-hash and re-sign every checkpoint from index `start` on: what an operator
    holding the real key can do to a whole chain."""
    last_sig = ""
    for index, record in enumerate(records):
        if index >= start:
            if index:
                record["seq"] = records[index - 1]["seq"] + 1
                record["prev_hash"] = records[index - 1]["hash"]
            if record["event"] == "audit.checkpoint":
                record["details"] = checkpoint_details(
                    records[:index],
                    signer=signer,
                    chain=record["chain"],
                    ts=record["ts"],
                    interval_s=record["details"].get("interval_s", 600),
                    prev_signature=last_sig,
                )
            rehash(record)
        if record["event"] == "audit.checkpoint":
            last_sig = record["details"]["signature"]


def frontier_before(records: list[Record], seq: int) -> Frontier:
    """The frontier of the records before `seq`, as an export's manifest gives it."""
    frontier = Frontier()
    frontier.extend(leaf_hash(r["hash"]) for r in records if r["seq"] < seq)
    return frontier


def ledger_records(db: Path, chain: str = "main") -> list[Record]:
    """The chain's records as the SQLite ledger holds them."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT line FROM audit_events WHERE chain = ? ORDER BY seq", (chain,)
        ).fetchall()
    return [json.loads(line) for (line,) in rows]


def rewrite_ledger(db: Path, records: list[Record], *, audit_file: Path | None = None) -> None:
    """Replace a chain in the SQLite ledger (rows, head and frontier) and in the audit file
    with `records`, as root on the host can."""
    chain = records[0]["chain"]
    frontier = Frontier()
    frontier.extend(leaf_hash(r["hash"]) for r in records)
    with sqlite3.connect(db) as conn:
        times = dict(conn.execute("SELECT seq, ts FROM audit_events WHERE chain = ?", (chain,)))
        latest = max(times.values())
        conn.execute("DELETE FROM audit_events WHERE chain = ?", (chain,))
        conn.executemany(
            "INSERT INTO audit_events (chain, seq, ts, event, response_id, line, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (chain, r["seq"], times.get(r["seq"], latest), r["event"], r.get("response_id"),
                 canonical(r), r["hash"])
                for r in records
            ],
        )  # fmt: skip
        conn.execute(
            "UPDATE audit_chains SET head_seq = ?, head_hash = ?, head_frontier = ? WHERE name = ?",
            (records[-1]["seq"], records[-1]["hash"], json.dumps(frontier.to_hex()), chain),
        )
    if audit_file is not None:
        audit_file.write_text("".join(canonical(r) + "\n" for r in records))
