"""Append sealed audit records to the ledger inside the caller's transaction."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from retention.audit.chain import GENESIS, seal_line
from retention.ledger import bulk
from retention.ledger.models import AuditChain, AuditEvent


def actor() -> dict[str, Any]:
    """Who writes: this host and process."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


# `ts` is the transaction's time, which each record's `ts` renders
EVENT_COLUMNS = ("chain", "seq", "ts", "event", "response_id", "line", "hash")


def append(
    conn: Connection, chain: str, bodies: list[dict[str, Any]], now: datetime
) -> list[tuple[dict[str, Any], str]]:
    """Seal `bodies` onto the head of `chain` and insert them; the caller commits.
    Returns each record with its JSON line."""
    if not bodies:
        return []
    head = conn.execute(
        select(AuditChain.head_seq, AuditChain.head_hash)
        .where(AuditChain.name == chain)
        .with_for_update()
    ).first()
    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
    records = []
    for body in bodies:
        seq += 1
        record, line = seal_line(body, chain=chain, seq=seq, prev_hash=prev)
        prev = record["hash"]
        records.append((record, line))
    bulk.insert_many(
        conn,
        AuditEvent.__table__,
        EVENT_COLUMNS,
        [
            (r["chain"], r["seq"], now, r["event"], r.get("response_id"), line, r["hash"])
            for r, line in records
        ],
    )
    if head:
        conn.execute(
            update(AuditChain).where(AuditChain.name == chain).values(head_seq=seq, head_hash=prev)
        )
    else:
        conn.execute(insert(AuditChain).values(name=chain, head_seq=seq, head_hash=prev))
    return records


def lines_between(conn: Connection, chain: str, first: int, last: int) -> list[str]:
    """The stored JSON lines of `chain` from seq `first` to `last`, in order."""
    return list(
        conn.execute(
            select(AuditEvent.line)
            .where(AuditEvent.chain == chain, AuditEvent.seq >= first, AuditEvent.seq <= last)
            .order_by(AuditEvent.seq)
        ).scalars()
    )
