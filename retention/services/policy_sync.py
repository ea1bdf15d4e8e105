"""Keep the ledger's deadlines and holds in step with the policies in force.

A sync's write takes the policies lock exclusively first (ledger/locks.py): no hold is placed
or lifted, and no record enrolled, while it re-plans, so what it reads of the ledger's holds
stays true until it commits."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import update

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.vocabulary import Basis, Event, MetaKey, State
from retention.ledger import queries
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger, Tx
from retention.ledger.locks import policies_changing
from retention.ledger.models import RECORDS
from retention.services import chains


def sync_policies(ledger: Ledger, policies: PolicySet) -> dict[str, Any] | None:
    """Re-compute every open record when the policies changed; None when they had not.

    The holds placed in the ledger are taken as the ledger has them in the transaction, not
    as `policies` carried them when read: a caller that read them before another process
    placed or lifted one never undoes it."""
    with ledger.read() as conn:
        if queries.get_meta(conn, MetaKey.POLICY_DIGEST) == policies.digest():
            return None
    with ledger.write() as tx:
        policies_changing(tx.conn)  # before the holds and the digest are read
        policies = with_ledger_holds(tx.conn, policies)
        digest = policies.digest()
        if (
            queries.get_meta(tx.conn, MetaKey.POLICY_DIGEST) == digest
        ):  # another process got here first
            return None
        stats = _recompute(tx, policies)
        queries.set_meta(tx.conn, MetaKey.POLICY_DIGEST, digest)
        tx.event(
            Event.POLICY_LOADED,
            details={
                "digest": digest,
                "source": policies.source,
                "policies": list(policies.names),
                **stats,
            },
        )
    return stats


def _recompute(tx: Tx, policies: PolicySet) -> dict[str, int]:
    """Apply `policies` to each pending or held record; count what changed."""
    stats = {"recomputed": 0, "changed": 0, "held": 0, "released": 0}
    chain_floors = chains.floors(tx.conn, policies)
    for rows in queries.iter_open(tx.conn):
        for row in rows:
            stats["recomputed"] += 1
            floor = chain_floors.get((row.provider, row.chain_root))
            decision = decide(queries.facts_of(row), policies, chain_floor=floor)
            if row.deadline_basis == Basis.ERASURE:  # a person asked: no policy delays it
                decision = dataclasses.replace(
                    decision, policy=row.policy, deadline=row.deadline, basis=Basis.ERASURE
                )
            if (decision.policy, decision.deadline, decision.hold) == (
                row.policy,
                row.deadline,
                row.hold,
            ):
                continue
            if not _update_as_read(tx, row, queries.decision_columns(decision)):
                continue  # a sweep closed it since it was read: the provider's answer stands
            stats["changed"] += 1
            common = {"policy": decision.policy, "deadline": decision.deadline}
            if decision.hold and row.state != State.HELD:
                stats["held"] += 1
                tx.record_event(Event.RESPONSE_HELD, row, **common, details={"hold": decision.hold})
            elif not decision.hold and row.state == State.HELD:
                stats["released"] += 1
                tx.record_event(Event.RESPONSE_RELEASED, row, **common, details={"hold": row.hold})
        tx.flush()  # a policy change over a large ledger keeps one batch of events in memory
    return stats


def _update_as_read(tx: Tx, row: Any, columns: dict[str, Any]) -> bool:
    """Set a record's decision only while its state and hold are as `row` read them (a sweep
    may close it meanwhile: it is not reopened); whether it was set."""
    r = RECORDS.c
    hold = r.hold.is_(None) if row.hold is None else r.hold == row.hold
    query = update(RECORDS).where(r.id == row.id, r.state == row.state, hold)
    return bool(tx.conn.execute(query.values(updated_at=tx.now, **columns)).rowcount)
