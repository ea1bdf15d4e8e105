"""Queries on the records table, in SQLAlchemy Core (no per-row ORM cost on hot paths)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from retention.core.plan import Decision
from retention.core.records import ClaimedRecord, ResponseFacts
from retention.core.vocabulary import OPEN_STATES, MetaKey, ObjectKind, State, meta_key
from retention.ledger import bulk
from retention.ledger.models import RECORDS, AuditEvent, Meta, RecordCount

R = RECORDS.c
CHUNK = 500


def _fact_fields(row: Row[Any]) -> dict[str, Any]:
    """The columns policies match on, by the names the core gives them."""
    return {
        "response_id": row.response_id,
        "provider": row.provider,
        "account": row.account,
        "created_at": row.created_at,
        "first_seen_at": row.first_seen_at,
        "model": row.model,
        "metadata": row.meta or {},
        "previous_response_id": row.previous_response_id,
        "chain_root": row.chain_root,
        "object": row.object,
        "last_activity_at": row.last_activity_at,
    }


def facts_of(row: Row[Any]) -> ResponseFacts:
    """The core's view of one records row."""
    return ResponseFacts(**_fact_fields(row))


def decision_columns(decision: Decision) -> dict[str, Any]:
    """The columns a decision sets on an open record."""
    return {
        "policy": decision.policy,
        "deadline": decision.deadline,
        "deadline_basis": decision.basis,
        "hold": decision.hold,
        "state": decision.state,
        "due_at": None if decision.hold else decision.deadline,
    }


# built once: each ingest commit runs it, and building a statement costs more than running it
_EXISTING = select(R.response_id).where(
    R.provider == bindparam("provider"), R.response_id.in_(bindparam("ids", expanding=True))
)


def existing_ids(conn: Connection, provider: str, ids: Iterable[str]) -> set[str]:
    """Which of `ids` the ledger already tracks for `provider`."""
    found: set[str] = set()
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(conn.execute(_EXISTING, {"provider": provider, "ids": chunk}).scalars())
    return found


def open_created_at(
    conn: Connection, provider: str, ids: Iterable[str]
) -> dict[str, datetime | None]:
    """The stored `created_at` of each pending or held record of `provider` among `ids` (a
    later record with an earlier one may tighten its deadline)."""
    found: dict[str, datetime | None] = {}
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found.update(
            conn.execute(
                select(R.response_id, R.created_at).where(
                    R.provider == provider, R.response_id.in_(chunk), R.state.in_(OPEN_STATES)
                )
            ).all()
        )
    return found


def open_rows(conn: Connection, provider: str, ids: Iterable[str]) -> list[Row[Any]]:
    """The pending or held records of `provider` among `ids`, whole."""
    found: list[Row[Any]] = []
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found += conn.execute(
            select(RECORDS).where(
                R.provider == provider, R.response_id.in_(chunk), R.state.in_(OPEN_STATES)
            )
        ).all()
    return found


def tighten_deadline(conn: Connection, row: Row[Any], now: datetime, **values: Any) -> bool:
    """Set a record's deadline columns only while it is as `row` read it (same state and
    deadline) and no sweep holds a live lease on it; whether it was changed."""
    return (
        conn.execute(
            update(RECORDS)
            .where(
                R.id == row.id,
                R.state == row.state,
                R.deadline == row.deadline,
                or_(R.lease_until.is_(None), R.lease_until < now),
            )
            .values(**values)
        ).rowcount
        == 1
    )


def move_deadline(conn: Connection, row: Row[Any], **values: Any) -> bool:
    """Set a record's deadline columns only while it is as `row` read it (same state and
    deadline), leased by a sweep or not: a later deadline must reach a record being deleted
    (the sweep's last look reads it); whether it was changed."""
    return (
        conn.execute(
            update(RECORDS)
            .where(R.id == row.id, R.state == row.state, R.deadline == row.deadline)
            .values(**values)
        ).rowcount
        == 1
    )


# a record's facts, as enrolment writes them and a sweep reads them back
FACT_COLUMNS = (
    "provider",
    "response_id",
    "account",
    "created_at",
    "first_seen_at",
    "model",
    "meta",
    "previous_response_id",
    "chain_root",
    "object",
    "last_activity_at",
)
INSERT_COLUMNS = (
    *FACT_COLUMNS,
    "state",
    "policy",
    "deadline",
    "deadline_basis",
    "hold",
    "due_at",
    "attempts",
    "updated_at",
)


def insert_records(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new records (the caller has removed those already tracked); the database's
    triggers count them."""
    values = itemgetter(*INSERT_COLUMNS)
    bulk.insert_many(conn, RECORDS, INSERT_COLUMNS, [values(row) for row in rows])


def iter_open(conn: Connection, batch: int = 2000) -> Iterator[list[Row[Any]]]:
    """Every pending or held record, in batches by primary key."""
    last = 0
    while True:
        rows = conn.execute(
            select(RECORDS).where(R.state.in_(OPEN_STATES), R.id > last).order_by(R.id).limit(batch)
        ).all()
        if not rows:
            return
        yield list(rows)
        last = rows[-1].id


def update_record(conn: Connection, record_id: int, **values: Any) -> int:
    """Set columns of one record; returns the number of rows changed."""
    return conn.execute(update(RECORDS).where(R.id == record_id).values(**values)).rowcount


CLOSE_COLUMNS = ("state", "closed_at", "attempts", "last_status", "last_error", "updated_at")
_CLEARED = ("due_at", "lease_owner", "lease_until")


def close_records(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Record many deletions or absences at once (keys: rid and CLOSE_COLUMNS); the due
    time and lease are cleared; the provider's answer stands whatever the state."""
    values = itemgetter(*CLOSE_COLUMNS)
    cleared = (None,) * len(_CLEARED)
    bulk.update_many(
        conn,
        RECORDS,
        (*CLOSE_COLUMNS, *_CLEARED),
        "id",
        [(*values(row), *cleared, row["rid"]) for row in rows],
    )


def update_owned(conn: Connection, record_id: int, owner: str, **values: Any) -> int:
    """Set columns of a record only while it is pending under `owner`'s lease."""
    return conn.execute(
        update(RECORDS)
        .where(R.id == record_id, R.state == State.PENDING, R.lease_owner == owner)
        .values(**values)
    ).rowcount


def owned(conn: Connection, record_id: int, owner: str) -> bool:
    """Whether the record is pending under `owner`'s lease."""
    return (
        conn.execute(
            select(R.id).where(R.id == record_id, R.state == State.PENDING, R.lease_owner == owner)
        ).first()
        is not None
    )


def due_filter(now: datetime, provider: str | None = None) -> Any:
    """Records due at `now`: their due time passed and no live lease.

    `due_at` is set only while a record is pending (a CHECK constraint keeps it so), which
    lets this filter walk the partial due-time index alone.
    """
    clauses = [R.due_at <= now, or_(R.lease_until.is_(None), R.lease_until < now)]
    if provider is not None:
        clauses.append(R.provider == provider)
    return and_(*clauses)


# what a sweep needs of a record (a ClaimedRecord's fields): its facts (for the last policy
# check) and what its audit events carry; leaving the bookkeeping columns out saves most of
# the row decoding
CLAIM_COLUMNS = (
    "id",
    *FACT_COLUMNS,
    "policy",
    "deadline",
    "deadline_basis",
    "attempts",
    "erasure_id",
    "items_deleted",
)


def claimed(row: Row[Any]) -> ClaimedRecord:
    """The sweep's view of one row read with CLAIM_COLUMNS (or more)."""
    return ClaimedRecord(
        id=row.id,
        **_fact_fields(row),
        policy=row.policy,
        deadline=row.deadline,
        deadline_basis=row.deadline_basis,
        attempts=row.attempts,
        erasure_id=row.erasure_id,
        items_deleted=row.items_deleted or 0,
    )


def due_batch_query(now: datetime, provider: str, limit: int) -> Any:
    """The sweep's query for the next due records of `provider`."""
    return (
        select(*(R[name] for name in CLAIM_COLUMNS))
        .where(due_filter(now, provider))
        .order_by(R.due_at)
        .limit(limit)
    )


def claim_due(
    conn: Connection,
    *,
    provider: str,
    now: datetime,
    limit: int,
    owner: str,
    lease_until: datetime,
) -> list[ClaimedRecord]:
    """Lease up to `limit` due records of `provider`, oldest due first."""
    if limit <= 0:
        return []
    query = due_batch_query(now, provider, limit)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = conn.execute(query).all()
    if rows:
        conn.execute(
            update(RECORDS)
            .where(R.id.in_([r.id for r in rows]))
            .values(lease_owner=owner, lease_until=lease_until)
        )
    return [claimed(row) for row in rows]


def release_leases(conn: Connection, owner: str | None = None) -> int:
    """Drop leases (all, or those of `owner`)."""
    query = update(RECORDS).where(R.lease_owner.is_not(None))
    if owner is not None:
        query = query.where(R.lease_owner == owner)
    return conn.execute(query.values(lease_owner=None, lease_until=None)).rowcount


def extend_leases(conn: Connection, owner: str, until: datetime) -> int:
    """Move the expiry of `owner`'s leases to `until`."""
    return conn.execute(
        update(RECORDS).where(R.lease_owner == owner).values(lease_until=until)
    ).rowcount


def any_due(conn: Connection, now: datetime, provider: str | None = None) -> bool:
    """Whether anything is due at `now`."""
    return conn.execute(select(R.id).where(due_filter(now, provider)).limit(1)).first() is not None


def count_due(conn: Connection, now: datetime) -> int:
    """How many records are due at `now`, those in flight included (read from the due-time
    index alone, without visiting a row)."""
    return conn.execute(select(func.count()).where(R.due_at <= now)).scalar_one()


def counts_by_state(conn: Connection) -> dict[str, int]:
    """Record counts per state (from the trigger-kept table: a few rows, any ledger size)."""
    return _summed(conn, RecordCount.state)


def counts_by_provider(conn: Connection) -> dict[str, int]:
    """Record counts per provider."""
    return _summed(conn, RecordCount.provider)


def _summed(conn: Connection, column: Any) -> dict[str, int]:
    """The kept counts added up by `column`, zeros left out."""
    counts: dict[str, int] = {}
    for key, n in conn.execute(select(column, RecordCount.n)):
        counts[key] = counts.get(key, 0) + n
    return {key: n for key, n in counts.items() if n}


def next_deadline(conn: Connection, now: datetime) -> datetime | None:
    """The earliest due time still ahead."""
    return conn.execute(select(func.min(R.due_at)).where(R.due_at > now)).scalar_one()


def overdue_count(conn: Connection, now: datetime) -> int:
    """Pending records whose deadline has passed (a range of the pending-deadline index)."""
    return conn.execute(
        select(func.count()).where(R.deadline <= now, R.due_at.is_not(None))
    ).scalar_one()


def counts_of_objects(conn: Connection) -> dict[str, dict[str, int]]:
    """Records of each object other than responses, by state (a partial index holds only
    those rows: this reads none of the responses)."""
    counts: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(R.object, R.state, func.count())
        .where(R.object != ObjectKind.RESPONSE.value)
        .group_by(R.object, R.state)
    )
    for kind, state, count in rows:
        counts.setdefault(kind, {})[state] = count
    return counts


def list_rows(
    conn: Connection,
    *,
    state: str | None = None,
    provider: str | None = None,
    policy: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    due_at: datetime | None = None,
    limit: int | None = None,
    kind: str | None = None,
) -> list[Row[Any]]:
    """Records that meet every filter given, by deadline (by due time with `due_at`: those
    due then). `since`/`until` bound, half open, when the response was made: its
    `created_at`, or when the ledger first saw it where that is unknown (what a TTL counts
    from)."""
    clauses = [] if due_at is None else [due_filter(due_at)]
    if state:
        clauses.append(R.state == state)
    if provider:
        clauses.append(R.provider == provider)
    if policy:
        clauses.append(R.policy == policy)
    if kind:
        clauses.append(R.object == kind)
    made = func.coalesce(R.created_at, R.first_seen_at)
    if since is not None:
        clauses.append(made >= since)
    if until is not None:
        clauses.append(made < until)
    order = (R.due_at, R.response_id) if due_at is not None else (R.deadline, R.response_id)
    query = select(RECORDS).where(*clauses).order_by(*order)
    return list(conn.execute(query.limit(limit) if limit else query).all())


def rows_for_id(conn: Connection, response_id: str) -> list[Row[Any]]:
    """Every record with this response ID (one per provider)."""
    return list(conn.execute(select(RECORDS).where(R.response_id == response_id)).all())


def conversation_members(conn: Connection, provider: str, root: str) -> list[Row[Any]]:
    """Every record of one conversation chain."""
    return list(
        conn.execute(select(RECORDS).where(R.provider == provider, R.chain_root == root)).all()
    )


def root_of(conn: Connection, provider: str, response_id: str) -> Row[Any] | None:
    """The response's `chain_root` in a row, or None when the ledger does not track it (a row
    whose root is None was recorded before chains were tracked)."""
    return conn.execute(
        select(R.chain_root).where(R.provider == provider, R.response_id == response_id)
    ).first()


def reroot(conn: Connection, provider: str, old: str, new: str) -> int:
    """Move a chain under a newly known, older first turn."""
    return conn.execute(
        update(RECORDS).where(R.provider == provider, R.chain_root == old).values(chain_root=new)
    ).rowcount


def heartbeat(conn: Connection, replica: str, now: datetime, live_for: float) -> int:
    """Note that `replica` sweeps now, forget replicas silent for a day; how many are live."""
    set_meta(conn, meta_key(MetaKey.REPLICA, replica), now.isoformat())
    live = 0
    for key, value in conn.execute(
        select(Meta.key, Meta.value).where(Meta.key.like(MetaKey.REPLICA + "%"))
    ).all():
        age = (now - datetime.fromisoformat(value)).total_seconds()
        if age > 86400:
            conn.execute(delete(Meta).where(Meta.key == key))
        elif age <= live_for:
            live += 1
    return max(1, live)


_META = select(Meta.value).where(Meta.key == bindparam("key"))  # built once: each ingest reads it


def get_meta(conn: Connection, key: str) -> str | None:
    """A value from the meta table."""
    return conn.execute(_META, {"key": key}).scalar_one_or_none()


def set_meta(conn: Connection, key: str, value: str) -> None:
    """Store a value in the meta table."""
    if conn.execute(update(Meta).where(Meta.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(Meta).values(key=key, value=value))


def delete_meta(conn: Connection, key: str) -> None:
    """Remove a value from the meta table (none there: nothing happens)."""
    conn.execute(delete(Meta).where(Meta.key == key))


def failed_query(
    *,
    ids: Iterable[str] = (),
    provider: str | None = None,
    policy: str | None = None,
    since: datetime | None = None,
) -> Any:
    """Failed records, oldest first by primary key: of these response IDs (all when none are
    named), of one provider and policy, failed at or after `since`."""
    query = select(RECORDS).where(R.state == State.FAILED).order_by(R.id)
    ids = list(ids)
    if ids:
        query = query.where(R.response_id.in_(ids))
    if provider is not None:
        query = query.where(R.provider == provider)
    if policy is not None:
        query = query.where(R.policy == policy)
    if since is not None:
        query = query.where(R.closed_at >= since)
    return query


def iter_failed(conn: Connection, query: Any, batch: int = 1000) -> Iterator[list[Row[Any]]]:
    """The rows of a `failed_query`, in batches by primary key (a batch may be changed before
    the next is read: the next starts after the last ID seen)."""
    last = 0
    while True:
        rows = list(conn.execute(query.where(R.id > last).limit(batch)).all())
        if not rows:
            return
        yield rows
        last = rows[-1].id


def requeue_failed(conn: Connection, record_id: int, **values: Any) -> int:
    """Set columns of a record only while it is still failed; the count triggers move it from
    `failed` to its new state. Returns the number of rows changed."""
    return conn.execute(
        update(RECORDS).where(R.id == record_id, R.state == State.FAILED).values(**values)
    ).rowcount


def rows_for_ids(conn: Connection, ids: Iterable[str]) -> list[Row[Any]]:
    """Every record with one of these response IDs (one per provider)."""
    found: list[Row[Any]] = []
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        found += conn.execute(select(RECORDS).where(R.response_id.in_(chunk))).all()
    return found


def events_for_id(conn: Connection, response_id: str) -> list[Any]:
    """The audit rows naming `response_id`, oldest first, across every chain."""
    return list(
        conn.execute(
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
    )
