"""Append sealed audit records to the ledger inside the caller's transaction."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from retention.audit.hashchain import GENESIS, seal_line
from retention.audit.merkle import Frontier, leaf_hash
from retention.errors import LedgerError
from retention.ledger import bulk
from retention.ledger.models import AUDIT_EVENTS, AuditChain, AuditEvent


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
    head = lock_head(conn, chain)
    seq, prev, frontier = head.seq, head.hash, head.frontier
    records = []
    for body in bodies:
        seq += 1
        record, line = seal_line(body, chain=chain, seq=seq, prev_hash=prev)
        prev = record["hash"]
        frontier.append(leaf_hash(prev))
        records.append((record, line))
    bulk.insert_many(
        conn,
        AUDIT_EVENTS,
        EVENT_COLUMNS,
        [
            (r["chain"], r["seq"], now, r["event"], r.get("response_id"), line, r["hash"])
            for r, line in records
        ],
    )
    frontier_hex = json.dumps(frontier.to_hex())
    conn.execute(_MOVE_HEAD, {"chain": chain, "seq": seq, "hash": prev, "frontier": frontier_hex})
    return records


@dataclass
class Head:
    """A chain's head as locked for an append: its last seq and hash, and its Merkle frontier."""

    seq: int
    hash: str
    frontier: Frontier


def lock_head(conn: Connection, chain: str) -> Head:
    """The chain's head, locked: no other writer may append between this read and ours. A new
    chain's head row is made first, at genesis, so that two processes starting the same chain
    at once queue on its lock (the second one's insert does nothing) instead of one failing
    on a duplicate key."""
    row = _select_head(conn, chain)
    if row is None:
        made = _insert_for(conn)(AuditChain).values(
            name=chain, head_seq=0, head_hash=GENESIS, head_frontier=json.dumps([])
        )
        conn.execute(made.on_conflict_do_nothing(index_elements=["name"]))
        row = _select_head(conn, chain)
        assert row is not None
    if row.head_frontier is None:  # written before migration 0007: computed once, here, and kept
        frontier = rebuild_frontier(conn, chain, row.head_seq)
        conn.execute(
            update(AuditChain)
            .where(AuditChain.name == chain)
            .values(head_frontier=json.dumps(frontier.to_hex()))
        )
    else:
        frontier = Frontier.from_hex(row.head_seq, json.loads(row.head_frontier))
    return Head(row.head_seq, row.head_hash, frontier)


# built once: every write transaction runs both
_HEAD = (
    select(AuditChain.head_seq, AuditChain.head_hash, AuditChain.head_frontier)
    .where(AuditChain.name == bindparam("chain"))
    .with_for_update()
)
_MOVE_HEAD = (
    update(AuditChain)
    .where(AuditChain.name == bindparam("chain"))
    .values(
        head_seq=bindparam("seq"), head_hash=bindparam("hash"), head_frontier=bindparam("frontier")
    )
)


def _select_head(conn: Connection, chain: str) -> Any:
    """The chain's head row, locked for update; None when the chain has none yet."""
    return conn.execute(_HEAD, {"chain": chain}).first()


def _insert_for(conn: Connection) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING (SQLite and PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def rebuild_frontier(conn: Connection, chain: str, size: int, page: int = 50_000) -> Frontier:
    """The frontier of the chain's first `size` records, read from the ledger in pages."""
    frontier = Frontier()
    while frontier.size < size:
        hashes = conn.execute(
            select(AuditEvent.hash)
            .where(
                AuditEvent.chain == chain,
                AuditEvent.seq > frontier.size,
                AuditEvent.seq <= min(size, frontier.size + page),
            )
            .order_by(AuditEvent.seq)
        ).scalars()
        before = frontier.size
        frontier.extend(leaf_hash(h) for h in hashes)
        if frontier.size == before:
            raise LedgerError(f"audit chain {chain} lacks records after seq {before}")
    return frontier


def lines_between(conn: Connection, chain: str, first: int, last: int) -> list[str]:
    """The stored JSON lines of `chain` from seq `first` to `last`, in order."""
    return list(
        conn.execute(
            select(AuditEvent.line)
            .where(AuditEvent.chain == chain, AuditEvent.seq >= first, AuditEvent.seq <= last)
            .order_by(AuditEvent.seq)
        ).scalars()
    )
