"""What a sweep would delete now (for --dry-run), without writing anything."""

from __future__ import annotations

from datetime import datetime

from retention.core.plan import PlannedDeletion, plan
from retention.core.policies import PolicySet
from retention.core.vocabulary import MetaKey
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.services import chains


def planned_now(
    ledger: Ledger, policies: PolicySet, now: datetime, limit: int | None = None
) -> list[PlannedDeletion]:
    """The due records under `policies`; the index answers when they are the ledger's policies,
    otherwise every open record is planned afresh in memory."""
    with ledger.read() as conn:
        if queries.get_meta(conn, MetaKey.POLICY_DIGEST) == policies.digest():
            facts = [queries.facts_of(r) for r in queries.list_rows(conn, due_at=now, limit=limit)]
            floors = None
        else:
            facts = [queries.facts_of(r) for rows in queries.iter_open(conn) for r in rows]
            floors = chains.floors(conn, policies)
    planned = plan(facts, policies, now, floors=floors)
    return planned[:limit] if limit is not None else planned
