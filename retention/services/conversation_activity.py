"""A response made in a conversation moves the conversation's last activity.

Under a policy with `ttl_from: last_activity` a conversation lives until its TTL after its
last recorded turn, so each turn (a recorded response naming its `conversation`) moves
`last_activity_at` forward, re-plans the deadline, and audits the move
(`response.deadline_changed`, with the turn that moved it). A conversation that is not tracked
yet is recorded then: the turn is how its ID reached us. Only open records move (pending or
held), and never backwards; one a sweep is deleting moves too, and the sweep's last look
before each page of items (sweep/executor.py) then finds it no longer due and stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.times import format_time
from retention.core.vocabulary import Event, ObjectKind
from retention.ledger import queries
from retention.ledger.ledger import Tx

Enrol = Callable[[list[NewRecord]], object]


def note_turns(
    tx: Tx,
    policies: PolicySet,
    provider: str,
    turns: dict[str, tuple[datetime, str]],
    enrol: Enrol,
    *,
    source: str | None = None,
) -> None:
    """Move each conversation in `turns` (its ID: the time of its latest turn, and the turn's
    response ID) to that activity; `enrol` records the ones not tracked yet."""
    tracked = queries.existing_ids(tx.conn, provider, turns)
    missing = [cid for cid in turns if cid not in tracked]
    if missing:
        enrol(
            [NewRecord(cid, provider=provider, object=ObjectKind.CONVERSATION) for cid in missing]
        )
    for row in queries.open_rows(tx.conn, provider, tracked):
        when, turn = turns[row.response_id]
        if row.object != ObjectKind.CONVERSATION:
            continue
        if row.last_activity_at is not None and when <= row.last_activity_at:
            continue
        _move(tx, policies, row, when, turn, source)


def _move(
    tx: Tx, policies: PolicySet, row: Any, when: datetime, turn: str, source: str | None
) -> None:
    """Record a later activity on one conversation, and its re-planned deadline."""
    facts = dataclasses.replace(queries.facts_of(row), last_activity_at=when)
    decision = decide(facts, policies)
    due_at = row.due_at
    if due_at is not None and due_at <= row.deadline:  # due at its deadline: at the new one
        due_at = decision.deadline if row.hold is None else None
    changed = queries.move_deadline(
        tx.conn,
        row,
        last_activity_at=when,
        deadline=decision.deadline,
        deadline_basis=decision.basis,
        due_at=due_at,
        updated_at=tx.now,
    )
    if not changed or decision.deadline == row.deadline:
        return
    tx.record_event(
        Event.RESPONSE_DEADLINE_CHANGED,
        row,
        deadline=decision.deadline,
        details={
            "reason": "conversation activity",
            "object": ObjectKind.CONVERSATION.value,
            "turn": turn,
            "last_activity_at": format_time(when),
            "previous_deadline": format_time(row.deadline),
            "deadline_basis": decision.basis,
            "source": source,
        },
    )
