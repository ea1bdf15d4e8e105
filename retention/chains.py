"""Conversation chains: responses linked by previous_response_id share a root, and under a
policy with `keep_chains_intact` every turn lives as long as the newest one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from retention.core.plan import decide, latest_chain_deadline
from retention.core.policies import PolicySet
from retention.core.records import OPEN_STATES
from retention.ledger import store
from retention.ledger.ledger import Tx


def assign_roots(conn: Connection, provider: str, rows: list[dict[str, Any]]) -> set[str]:
    """Set `chain_root` on new rows (parents first where they come together), re-root chains
    whose first turn just arrived, and return the roots touched."""
    local: dict[str, str] = {}
    touched: set[str] = set()
    for row in sorted(rows, key=lambda r: (r["created_at"] is None, r["created_at"] or 0)):
        parent = row["previous_response_id"]
        if parent is None:
            root = row["response_id"]
        else:
            root = local.get(parent) or store.root_of(conn, provider, parent) or parent
            touched.add(root)
        row["chain_root"] = local[row["response_id"]] = root
    for row in rows:
        moved = row["chain_root"] != row["response_id"] and store.reroot(
            conn, provider, row["response_id"], row["chain_root"]
        )
        if moved:
            touched.add(row["chain_root"])
    return touched


def floors(conn: Connection, policies: PolicySet) -> dict[tuple[str, str], datetime]:
    """Latest own deadline of every chain with more than one turn and one still open."""
    if not policies.keeps_chains:
        return {}
    r = store.R
    roots = conn.execute(
        select(r.provider, r.chain_root)
        .where(r.chain_root.is_not(None))
        .group_by(r.provider, r.chain_root)
        .having(func.count() > 1)
    ).all()
    result = {}
    for provider, root in roots:
        members = store.chain_members(conn, provider, root)
        if any(m.state in OPEN_STATES for m in members):
            floor = latest_chain_deadline([store.facts_of(m) for m in members], policies)
            if floor is not None:
                result[(provider, root)] = floor
    return result


def refresh(tx: Tx, provider: str, root: str, policies: PolicySet) -> int:
    """Give the open turns of one chain the deadline its newest turn implies; returns how
    many deadlines moved (each with a `response.deadline_changed` event)."""
    members = store.chain_members(tx.conn, provider, root)
    floor = latest_chain_deadline([store.facts_of(m) for m in members], policies)
    moved = 0
    for row in members:
        if row.state not in OPEN_STATES:
            continue
        decision = decide(store.facts_of(row), policies, chain_floor=floor)
        if decision.deadline == row.deadline:
            continue
        moved += 1
        store.update_record(
            tx.conn,
            row.id,
            deadline=decision.deadline,
            deadline_basis=decision.basis,
            policy=decision.policy,
            due_at=None if row.hold else decision.deadline,
            updated_at=tx.now,
        )
        tx.event(
            "response.deadline_changed",
            response_id=row.response_id,
            provider=provider,
            account=row.account,
            policy=decision.policy,
            deadline=decision.deadline,
            details={
                "reason": "conversation chain kept intact",
                "chain_root": root,
                "previous_deadline": row.deadline.isoformat(),
            },
        )
    return moved
