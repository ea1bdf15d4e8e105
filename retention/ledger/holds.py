"""The `holds` table: legal holds placed in the ledger, as rows and as the core's `Hold`s.

The policies in force are the policies file's plus the ledger's active holds (those not yet
lifted, expired or not: an expired hold holds until it is lifted, with its events). Every
process joins them the same way, `with_ledger_holds`, so the digest of what it applies is the
digest any other process computes from the same file and the same ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from retention.core.policies import Hold, Match, PolicySet
from retention.core.times import format_time
from retention.core.vocabulary import State
from retention.ledger import queries
from retention.ledger.models import HOLDS, RECORDS

H = HOLDS.c


def match_doc(match: Match | None) -> dict[str, Any] | None:
    """A match as JSON writes it: the conditions it has, as a policies file's `match`."""
    if match is None:
        return None
    doc: dict[str, Any] = {
        k: v
        for k, v in (
            ("object", match.object),
            ("provider", match.provider),
            ("account", match.account),
            ("model", match.model),
        )
        if v is not None
    }
    if match.metadata:
        doc["metadata"] = dict(sorted(match.metadata.items()))
    return doc


def match_of(doc: Mapping[str, Any] | None) -> Match | None:
    """The Match a `match_doc` describes."""
    if doc is None:
        return None
    return Match(
        object=doc.get("object"),
        provider=doc.get("provider"),
        account=doc.get("account"),
        model=doc.get("model"),
        metadata=dict(doc.get("metadata") or {}),
    )


def hold_of(row: Row[Any]) -> Hold:
    """The core's view of one holds row."""
    return Hold(
        name=row.name,
        ids=frozenset(json.loads(row.ids)),
        match=match_of(json.loads(row.match) if row.match is not None else None),
        placed=True,
    )


_ACTIVE = select(HOLDS).where(H.lifted_at.is_(None)).order_by(H.id)  # built once: hot


def active_rows(conn: Connection) -> list[Row[Any]]:
    """The holds not lifted, in the order they were placed."""
    return list(conn.execute(_ACTIVE).all())


def active_holds(conn: Connection) -> tuple[Hold, ...]:
    """The ledger's holds in force, in the order they were placed."""
    return tuple(hold_of(row) for row in active_rows(conn))


def with_ledger_holds(conn: Connection, policies: PolicySet) -> PolicySet:
    """`policies` with the ledger's holds as they are now: the file's holds first, then the
    ledger's active ones (any it carried from an earlier read are replaced)."""
    own = tuple(h for h in policies.holds if not h.placed)
    return replace(policies, holds=(*own, *active_holds(conn)))


def all_rows(conn: Connection, *, lifted: bool) -> list[Row[Any]]:
    """Every hold placed in the ledger (the lifted ones too when `lifted`), oldest first."""
    query = select(HOLDS).order_by(H.id)
    return list(conn.execute(query if lifted else query.where(H.lifted_at.is_(None))).all())


def by_name(conn: Connection, name: str) -> Row[Any] | None:
    """The hold of this name, active or lifted."""
    return conn.execute(select(HOLDS).where(H.name == name)).first()


def insert_hold(conn: Connection, **values: Any) -> None:
    """Store a new hold (`ids` and `match` as Python values; they are kept as JSON)."""
    values["ids"] = json.dumps(sorted(values["ids"]))
    values["match"] = json.dumps(values["match"]) if values["match"] is not None else None
    conn.execute(insert(HOLDS).values(**values))


def mark_lifted(conn: Connection, name: str, *, at: datetime, reason: str, by: str) -> bool:
    """Lift a hold still active; whether this call lifted it."""
    changed = conn.execute(
        update(HOLDS)
        .where(H.name == name, H.lifted_at.is_(None))
        .values(lifted_at=at, lifted_reason=reason, lifted_by=by)
    ).rowcount
    return bool(changed)


def expired_names(conn: Connection, now: datetime) -> list[str]:
    """Active holds whose `until` has come, oldest first."""
    query = (
        select(H.name)
        .where(H.lifted_at.is_(None), H.until.is_not(None), H.until <= now)
        .order_by(H.until, H.id)
    )
    return list(conn.execute(query).scalars())


def held_counts(conn: Connection) -> dict[str, int]:
    """How many records each hold keeps `held` now (by the state index: held ones only)."""
    r = RECORDS.c
    rows = conn.execute(
        select(r.hold, func.count()).where(r.state == State.HELD.value).group_by(r.hold)
    ).all()
    return {name: n for name, n in rows if name is not None}


def held_by(conn: Connection, name: str) -> list[Row[Any]]:
    """The records this hold keeps `held` (each names one hold: the first that covers it)."""
    r = RECORDS.c
    return list(
        conn.execute(
            select(RECORDS).where(r.state == State.HELD.value, r.hold == name).order_by(r.id)
        ).all()
    )


def covered_ids(conn: Connection, holds: Iterable[Hold], record_ids: list[int]) -> set[int]:
    """Which of these records (by primary key) a hold among `holds` covers, as the ledger
    stores their facts."""
    holds = tuple(holds)
    if not holds or not record_ids:
        return set()
    found: set[int] = set()
    for start in range(0, len(record_ids), queries.CHUNK):
        chunk = record_ids[start : start + queries.CHUNK]
        rows = conn.execute(select(RECORDS).where(RECORDS.c.id.in_(chunk))).all()
        found.update(row.id for row in rows if any(h.covers(queries.facts_of(row)) for h in holds))
    return found


def view_of(row: Row[Any], *, held: int | None = None) -> dict[str, Any]:
    """A hold placed in the ledger as `hold ls -o json` and `GET /v1/holds` show it (`held`:
    how many records it keeps held, left out when not given)."""
    view = {
        "name": row.name,
        "source": "ledger",
        "state": "lifted" if row.lifted_at is not None else "active",
        "ids": json.loads(row.ids),
        "match": json.loads(row.match) if row.match is not None else None,
        "reason": row.reason,
        "ticket": row.ticket,
        "actor": row.actor,
        "placed_at": format_time(row.placed_at),
        "until": format_time(row.until),
        "lifted_at": format_time(row.lifted_at),
        "lifted_reason": row.lifted_reason,
        "lifted_by": row.lifted_by,
    }
    return view if held is None else {**view, "held": held}


def file_view(hold: Hold, *, held: int) -> dict[str, Any]:
    """A hold of the policies file, in the same shape (what the file does not say is null)."""
    return {
        "name": hold.name,
        "source": "policies_file",
        "state": "active",
        "ids": sorted(hold.ids),
        "match": match_doc(hold.match),
        "reason": None,
        "ticket": None,
        "actor": None,
        "placed_at": None,
        "until": None,
        "lifted_at": None,
        "lifted_reason": None,
        "lifted_by": None,
        "held": held,
    }
