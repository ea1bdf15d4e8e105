"""Conversation chains: responses linked by previous_response_id share a root (the first turn
the ledger knows of), and under a policy with `keep_chains_intact` every turn lives as long as
the newest one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from retention.core.plan import decide, latest_chain_deadline
from retention.core.policies import PolicySet
from retention.core.times import format_time
from retention.core.vocabulary import OPEN_STATES, Basis, Event
from retention.ledger import queries
from retention.ledger.ledger import Tx
from retention.ledger.models import RECORDS


def assign_roots(conn: Connection, provider: str, rows: list[dict[str, Any]]) -> set[str]:
    """Set `chain_root` on new rows, following parents through the batch and the ledger; move
    chains whose first turn just arrived under it; return every root whose chain changed."""
    batch = {row["response_id"]: row for row in rows}
    touched: set[str] = set()
    for row in rows:
        row["chain_root"] = _root(conn, provider, row, batch)
        if row["previous_response_id"] is not None:
            touched.add(row["chain_root"])
    for row in rows:
        own, root = row["response_id"], row["chain_root"]
        if root != own and queries.reroot(conn, provider, own, root):
            touched.add(root)
    return touched | _roots_with_members(
        conn, provider, [r for r in rows if r["chain_root"] == r["response_id"]]
    )


def _root(
    conn: Connection, provider: str, row: dict[str, Any], batch: dict[str, dict[str, Any]]
) -> str:
    """The first known turn above `row` (a cycle stops the walk where it closes)."""
    seen = {row["response_id"]}
    current = row
    while (parent := current["previous_response_id"]) is not None and parent not in seen:
        seen.add(parent)
        if parent in batch:
            current = batch[parent]
            continue
        known = queries.root_of(conn, provider, parent)
        if known is None:
            return parent  # not recorded yet: it will take the chain over when it arrives
        if known.chain_root is None:  # recorded before chains were tracked: its own root
            conn.execute(
                update(RECORDS)
                .where(queries.R.provider == provider, queries.R.response_id == parent)
                .values(chain_root=parent)
            )
            return parent
        return known.chain_root
    return current["response_id"]


_WITH_MEMBERS = (  # built once: every enrolment runs it
    select(queries.R.chain_root)
    .where(
        queries.R.provider == bindparam("provider"),
        queries.R.chain_root.in_(bindparam("ids", expanding=True)),
    )
    .distinct()
)


def _roots_with_members(conn: Connection, provider: str, roots: list[dict[str, Any]]) -> set[str]:
    """Which of these new first turns already have later turns in the ledger."""
    ids = [r["response_id"] for r in roots]
    found: set[str] = set()
    for start in range(0, len(ids), queries.CHUNK):
        chunk = ids[start : start + queries.CHUNK]
        found.update(conn.execute(_WITH_MEMBERS, {"provider": provider, "ids": chunk}).scalars())
    return found


def floors(conn: Connection, policies: PolicySet) -> dict[tuple[str, str], datetime]:
    """Latest own deadline of every chain with more than one turn and one still open."""
    if not policies.keeps_chains:
        return {}
    r = queries.R
    roots = conn.execute(
        select(r.provider, r.chain_root)
        .where(r.chain_root.is_not(None))
        .group_by(r.provider, r.chain_root)
        .having(func.count() > 1)
    ).all()
    result = {}
    for provider, root in roots:
        members = queries.conversation_members(conn, provider, root)
        if any(m.state in OPEN_STATES for m in members):
            floor = latest_chain_deadline([queries.facts_of(m) for m in members], policies)
            if floor is not None:
                result[(provider, root)] = floor
    return result


def refresh(tx: Tx, provider: str, root: str, policies: PolicySet) -> int:
    """Give the open turns of one chain the deadline its newest turn implies; returns how
    many deadlines moved (each with a `response.deadline_changed` event)."""
    members = queries.conversation_members(tx.conn, provider, root)
    floor = latest_chain_deadline([queries.facts_of(m) for m in members], policies)
    moved = 0
    for row in members:
        if row.state not in OPEN_STATES or row.deadline_basis == Basis.ERASURE:
            continue  # closed, or a person asked for it to go: no conversation keeps it
        decision = decide(queries.facts_of(row), policies, chain_floor=floor)
        if decision.deadline == row.deadline:
            continue
        moved += 1
        queries.update_record(
            tx.conn,
            row.id,
            deadline=decision.deadline,
            deadline_basis=decision.basis,
            policy=decision.policy,
            due_at=None if row.hold else decision.deadline,
            updated_at=tx.now,
        )
        tx.event(
            Event.RESPONSE_DEADLINE_CHANGED,
            response_id=row.response_id,
            provider=provider,
            account=row.account,
            policy=decision.policy,
            deadline=decision.deadline,
            details={
                "reason": "conversation chain kept intact",
                "chain_root": root,
                "previous_deadline": format_time(row.deadline),
            },
        )
    return moved
