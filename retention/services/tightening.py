"""A later record of a tracked response with an earlier `created_at` tightens its deadline.

The first record of an ID decides its facts; a wrong creation time in it (a clock far ahead, a
bad default) would otherwise keep the response for too long. A later record (ingest, import,
`record`, discovery) whose `created_at` is earlier than the one stored, or that gives one
where none was known, re-applies the policies to the corrected facts, and the deadline moves
if, and only if, it moves earlier. Only open records (pending or held) move, never one a sweep
holds a live lease on, and each move is audited (`response.deadline_tightened`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from retention.core.plan import decide, latest_chain_deadline
from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.times import format_time
from retention.core.vocabulary import Event
from retention.ledger import queries
from retention.ledger.ledger import Tx
from retention.services import chains


def tighten(
    tx: Tx,
    policies: PolicySet,
    provider: str,
    records: list[NewRecord],
    *,
    source: str | None = None,
) -> int:
    """Tighten the deadlines `records` (of tracked IDs of `provider`) imply; how many moved."""
    earliest: dict[str, datetime] = {}
    for record in records:
        when = record.created_at
        if when is not None and (
            record.response_id not in earliest or when < earliest[record.response_id]
        ):
            earliest[record.response_id] = when
    if not earliest:
        return 0
    stored = queries.open_created_at(tx.conn, provider, earliest)  # light: most change nothing
    candidates = [i for i, when in stored.items() if when is None or earliest[i] < when]
    moved = 0
    for row in queries.open_rows(tx.conn, provider, candidates) if candidates else ():
        created = earliest[row.response_id]
        if row.created_at is not None and created >= row.created_at:
            continue
        if _tighten_one(tx, policies, row, created, source):
            moved += 1
    return moved


def _tighten_one(
    tx: Tx, policies: PolicySet, row: Any, created: datetime, source: str | None
) -> bool:
    """Move one record's deadline earlier when its corrected facts say so."""
    facts = dataclasses.replace(queries.facts_of(row), created_at=created)
    floor = None
    keeps_chain = policies.keeps_chains and row.chain_root is not None
    if keeps_chain:
        members = [
            facts if m.id == row.id else queries.facts_of(m)
            for m in queries.conversation_members(tx.conn, row.provider, row.chain_root)
        ]
        floor = latest_chain_deadline(members, policies)
    decision = decide(facts, policies, chain_floor=floor)
    if decision.deadline >= row.deadline:
        return False
    due_at = row.due_at
    # due at its deadline: due at the new one; a retry time (a failed attempt's backoff, a
    # provider's Retry-After on a 429, which counts no attempt) is kept
    if due_at is not None and due_at <= row.deadline:
        due_at = min(due_at, decision.deadline)
    changed = queries.tighten_deadline(
        tx.conn,
        row,
        tx.now,
        created_at=created,
        deadline=decision.deadline,
        deadline_basis=decision.basis,
        due_at=due_at,
        updated_at=tx.now,
    )
    if not changed:  # a sweep holds it, or it changed since it was read
        return False
    tx.record_event(
        Event.RESPONSE_DEADLINE_TIGHTENED,
        row,
        deadline=decision.deadline,
        details={
            "previous_deadline": format_time(row.deadline),
            "created_at": format_time(created),
            "previous_created_at": format_time(row.created_at),
            "deadline_basis": decision.basis,
            "previous_deadline_basis": row.deadline_basis,
            "source": source,
        },
    )
    if keeps_chain:  # the chain's floor may have come down with it
        chains.refresh(tx, row.provider, row.chain_root, policies)
    return True
