"""`retention explain ID`: what the ledger knows of one ID, and what the policies say now."""

from __future__ import annotations

import json
from typing import Any

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.times import format_time
from retention.core.vocabulary import ObjectKind, State
from retention.errors import InputError
from retention.ledger import holds, queries
from retention.ledger.ledger import Ledger


def explain_id(ledger: Ledger, policies: PolicySet, response_id: str) -> dict[str, Any]:
    """Everything the ledger knows about one ID, and what the policies say about it now."""
    with ledger.read() as conn:
        rows = queries.rows_for_id(conn, response_id)
        events = queries.events_for_id(conn, response_id)
        conversations = {
            row.id: queries.conversation_members(conn, row.provider, row.chain_root)
            for row in rows
            if row.chain_root
        }
        placed = {row.hold: holds.by_name(conn, row.hold) for row in rows if row.hold}
    if not rows:
        raise InputError(f"{response_id} is not in the ledger")
    records = [
        {
            **_record_view(row, policies, conversations.get(row.id, []), events),
            "hold_detail": _hold_detail(row, placed, policies),
        }
        for row in rows
    ]
    return {"response_id": response_id, "records": records}


def _conversation_view(row: Any) -> dict[str, Any]:
    """A conversation's own facts: its last recorded turn, and its items deleted so far."""
    if row.object != ObjectKind.CONVERSATION:
        return {}
    return {
        "last_activity_at": format_time(row.last_activity_at),
        "items_deleted": row.items_deleted or 0,
    }


def _hold_detail(row: Any, placed: dict[str, Any], policies: PolicySet) -> dict[str, Any] | None:
    """The hold that keeps the record, when one does: who placed it in the ledger, why, with
    which ticket and until when; or the policies file that lists it."""
    if row.state != State.HELD or not row.hold:
        return None
    found = placed.get(row.hold)
    if found is not None and found.lifted_at is None:  # a lifted one may share a file's name
        return holds.view_of(found)
    return {"name": row.hold, "source": "policies_file", "file": policies.source}


def _record_view(
    row: Any, policies: PolicySet, conversation: list[Any], events: list[Any]
) -> dict[str, Any]:
    """One record of the ID (one per provider): its state, why, and its events."""
    return {
        "response_id": row.response_id,
        "object": row.object,
        "provider": row.provider,
        "account": row.account,
        "state": row.state,
        "policy": row.policy,
        **_conversation_view(row),
        "matched": _matched(row, policies),
        "deadline": format_time(row.deadline),
        "deadline_basis": row.deadline_basis,
        "hold": row.hold,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "conversation": [
            {
                "response_id": m.response_id,
                "created_at": format_time(m.created_at),
                "state": m.state,
                "deadline": format_time(m.deadline),
            }
            for m in sorted(
                conversation, key=lambda m: (m.created_at or m.first_seen_at, m.response_id)
            )
        ],
        "current_policies": _current(row, policies),
        "events": [
            {
                "chain": e.chain,
                "seq": e.seq,
                "ts": format_time(e.ts),
                "event": e.event,
                "hash": e.hash,
                "record": record,
            }
            for e in events
            if (record := json.loads(e.line)).get("provider") in (row.provider, None)
        ],
    }


def _matched(row: Any, policies: PolicySet) -> str:
    """Which policy the record's facts match now, in words."""
    policy = policies.policy_for(queries.facts_of(row))
    if policy.name == "default":
        return "no policy matched; the default applies"
    return f"policy {policy.name!r} matches {policy.match.describe()}"


def _current(row: Any, policies: PolicySet) -> dict[str, Any]:
    """The policy, deadline and hold the policies in force now would give the record."""
    decision = decide(queries.facts_of(row), policies)
    return {
        "policy": decision.policy,
        "deadline": format_time(decision.deadline),
        "hold": decision.hold,
    }
