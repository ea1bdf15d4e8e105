"""What a policies change would do now, before it is applied: records it makes due, per policy."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.services import chains


def diff(ledger: Ledger, old: PolicySet, new: PolicySet, now: datetime) -> dict[str, Any]:
    """Count, over every pending or held record, what changes from `old` to `new` at `now`."""
    newly_due: Counter[str] = Counter()
    no_longer_due: Counter[str] = Counter()
    counts = {"records": 0, "newly_held": 0, "released": 0, "deadline_changed": 0}
    with ledger.read() as conn:
        old_floors, new_floors = chains.floors(conn, old), chains.floors(conn, new)
        for rows in queries.iter_open(conn):
            for row in rows:
                facts, key = queries.facts_of(row), (row.provider, row.chain_root)
                before = decide(facts, old, chain_floor=old_floors.get(key))
                after = decide(facts, new, chain_floor=new_floors.get(key))
                counts["records"] += 1
                counts["deadline_changed"] += before.deadline != after.deadline
                counts["newly_held"] += bool(after.hold and not before.hold)
                counts["released"] += bool(before.hold and not after.hold)
                if after.is_due(now) and not before.is_due(now):
                    newly_due[after.policy] += 1
                elif before.is_due(now) and not after.is_due(now):
                    no_longer_due[before.policy] += 1
    return {
        **counts,
        "newly_due": dict(newly_due),
        "newly_due_total": sum(newly_due.values()),
        "no_longer_due": dict(no_longer_due),
    }
