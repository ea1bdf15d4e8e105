"""Read-only views of the ledger for `status` and `explain`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.records import STATES
from retention.core.times import format_time
from retention.errors import InputError
from retention.ledger import store
from retention.ledger.ledger import Ledger
from retention.ledger.models import AuditEvent, Meta


def status_of(ledger: Ledger, now: datetime) -> dict[str, Any]:
    """Counts by state, what is due and overdue, the next deadline and the last sweep."""
    with ledger.read() as conn:
        counts = store.counts_by_state(conn)
        last = store.get_meta(conn, "last_sweep")
        return {
            "states": {state: counts.get(state, 0) for state in STATES},
            "total": sum(counts.values()),
            "due_now": store.count_due(conn, now),
            "overdue": store.overdue_count(conn, now),
            "next_deadline": format_time(store.next_deadline(conn, now)),
            "last_sweep": json.loads(last) if last else None,
            "coverage": _coverage(conn),
        }


def _coverage(conn: Connection) -> dict[str, Any]:
    """Per provider: records tracked, and what discovery has read of the provider's listing."""
    tracked = store.counts_by_provider(conn)
    rows = conn.execute(select(Meta.key, Meta.value).where(Meta.key.like("discover:%"))).all()
    crawls = {key.split(":", 1)[1]: json.loads(value) for key, value in rows}
    return {
        name: {
            "tracked": tracked.get(name, 0),
            "listed_seen": crawls.get(name, {}).get("listed_total"),
            "enrolled_by_discovery": crawls.get(name, {}).get("discovered_total"),
            "last_complete_crawl": crawls.get(name, {}).get("last_complete"),
            "crawl_in_progress": bool(crawls.get(name, {}).get("after")),
        }
        for name in sorted(set(tracked) | set(crawls))
    }


def explain_id(ledger: Ledger, policies: PolicySet, response_id: str) -> dict[str, Any]:
    """Everything the ledger knows about one ID, and what the policies say about it now."""
    with ledger.read() as conn:
        rows = store.rows_for_id(conn, response_id)
        events = conn.execute(
            select(
                AuditEvent.chain,
                AuditEvent.seq,
                AuditEvent.ts,
                AuditEvent.event,
                AuditEvent.hash,
                AuditEvent.line,
            )
            .where(AuditEvent.response_id == response_id)
            .order_by(AuditEvent.ts, AuditEvent.chain, AuditEvent.seq)
        ).all()
        conversations = {
            row.id: store.chain_members(conn, row.provider, row.chain_root)
            for row in rows
            if row.chain_root
        }
    records = []
    for row in rows:
        facts = store.facts_of(row)
        policy = policies.policy_for(facts)
        now_decision = decide(facts, policies)
        records.append(
            {
                "response_id": row.response_id,
                "provider": row.provider,
                "account": row.account,
                "state": row.state,
                "policy": row.policy,
                "matched": (
                    "no policy matched; the default applies"
                    if policy.name == "default"
                    else f"policy {policy.name!r} matches {policy.match.describe()}"
                ),
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
                        conversations.get(row.id, []),
                        key=lambda m: (m.created_at or m.first_seen_at, m.response_id),
                    )
                ],
                "current_policies": {
                    "policy": now_decision.policy,
                    "deadline": format_time(now_decision.deadline),
                    "hold": now_decision.hold,
                },
                "events": [
                    {
                        "chain": e.chain,
                        "seq": e.seq,
                        "ts": format_time(e.ts),
                        "event": e.event,
                        "hash": e.hash,
                        "record": json.loads(e.line),
                    }
                    for e in events
                    if json.loads(e.line).get("provider") in (row.provider, None)
                ],
            }
        )
    if not records:
        raise InputError(f"{response_id} is not in the ledger")
    return {"response_id": response_id, "records": records}
