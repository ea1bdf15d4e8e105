"""Erasure by data subject: a person's request makes every record of theirs due at once.

`request_erasure` finds the records of the subject through the subject index (never a scan),
and in one transaction: pending ones become due at the request's time (deadline basis
`erasure`, `response.deadline_changed` when the deadline moved), failed ones are reopened
(`response.requeued`: due now, or held when a hold covers them, as `retention retry` decides),
held ones are withheld (a hold wins), deleted or absent ones are noted as already gone; the
request is stored with the records it covers and `erasure.requested` is written with the
subject's digests and the counts, never a value. The sweep then deletes them
as it deletes anything due, each outcome event naming the erasure. `settle` closes a request
once none of its records is still to be deleted (`erasure.completed`), and marks one open past
`erasure.deadline` (`erasure.overdue`, once).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from retention.config.settings import Settings
from retention.core.policies import Hold, PolicySet
from retention.core.quoting import quote
from retention.core.subjects import MAX_VALUE, subject_digest
from retention.core.text import text_flaw
from retention.core.times import format_time
from retention.core.vocabulary import Basis, ErasureState, Event, State
from retention.errors import InputError
from retention.ledger import bulk, queries
from retention.ledger.holds import active_holds, with_ledger_holds
from retention.ledger.ledger import Ledger, Tx
from retention.ledger.locks import policies_steady
from retention.ledger.models import ERASURE_ITEMS, RECORD_SUBJECTS, RECORDS, Erasure
from retention.services import subject_index
from retention.services.subject_key import subject_key

MAX_REASON = 1000  # characters
MAX_TICKET = 200
ITEM_COLUMNS = ("erasure_id", "record_id", "withheld")

Standing = tuple[Any, str, str | None]  # a request's record, its outcome, the hold withholding it


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A checked request: the subject's pairs, why, and the ticket it answers."""

    subject: dict[str, str]
    reason: str
    ticket: str | None = None


def checked_request(subject: Any, reason: Any, ticket: Any, settings: Settings) -> ErasureRequest:
    """Validate a request as given (CLI or HTTP); InputError says what is wrong."""
    keys = settings.erasure.subject_keys
    if not isinstance(subject, dict) or not subject:
        raise InputError(f"subject: give one or more of {', '.join(keys)} with its value")
    if len(subject) > len(keys):
        raise InputError(f"subject: at most {len(keys)} pairs, one per key of {', '.join(keys)}")
    pairs: dict[str, str] = {}
    for name, value in subject.items():
        if name not in keys:
            raise InputError(
                f"subject: {quote(name)} is not a subject key (erasure.subject_keys: "
                f"{', '.join(keys)})"
            )
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"subject: {name}: expected a non-empty string")
        if len(value) > MAX_VALUE or text_flaw(value):
            raise InputError(f"subject: {name}: at most {MAX_VALUE} printable characters")
        pairs[name] = value
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("reason: say why (for example the request's reference)")
    if len(reason) > MAX_REASON or text_flaw(reason):
        raise InputError(f"reason: at most {MAX_REASON} printable characters")
    if ticket is not None and (
        not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET or text_flaw(ticket)
    ):
        raise InputError(f"ticket: at most {MAX_TICKET} printable characters")
    for text, field in ((reason, "reason"), (ticket or "", "ticket")):
        # a value of a few characters ("7") is in many honest reasons: only longer ones count
        if any(len(v) >= 4 and v.casefold() in text.casefold() for v in pairs.values()):
            raise InputError(
                f"{field}: it holds the subject's value, which the trail must never keep; "
                "say why without it (a request reference)"
            )
    return ErasureRequest(pairs, reason.strip(), ticket)


def subject_digests(settings: Settings, request: ErasureRequest) -> list[str]:
    """The digests that find the subject's records."""
    key = subject_key(settings.erasure.key_file)
    return sorted({subject_digest(key, name, value) for name, value in request.subject.items()})


def request_erasure(
    ledger: Ledger,
    settings: Settings,
    request: ErasureRequest,
    *,
    dry_run: bool = False,
    policies: PolicySet | None = None,
) -> dict[str, Any]:
    """Make the subject's records due now (or, with `dry_run`, say what would go and what is
    withheld); returns the request's summary. A failed record a hold covers (of `policies`, the
    file's, or of the ledger) is reopened held, and withheld."""
    digests = subject_digests(settings, request)
    subject_index.backfill(ledger, settings, subject_key(settings.erasure.key_file))
    if dry_run:
        with ledger.read() as conn:
            rows = _records_of(conn, digests)
            holds = _holds_now(conn, policies)
        return _preview(rows, holds)
    with ledger.write() as tx:
        policies_steady(tx.conn)  # the holds stay as read until this commits (ledger/locks.py)
        rows = _records_of(tx.conn, digests)
        erasure_id = "er_" + secrets.token_hex(10)
        counts, items = _apply(tx, rows, erasure_id, _holds_now(tx.conn, policies))
        due_by = tx.now + settings.erasure.deadline
        tx.conn.execute(
            insert(Erasure).values(
                id=erasure_id,
                subjects=json.dumps(digests),
                requested_at=tx.now,
                due_by=due_by,
                reason=request.reason,
                ticket=request.ticket,
                state=ErasureState.OPEN.value,
            )
        )
        bulk.insert_many(tx.conn, ERASURE_ITEMS, ITEM_COLUMNS, items)
        tx.event(
            Event.ERASURE_REQUESTED,
            details={
                "erasure_id": erasure_id,
                "subjects": digests,
                "reason": request.reason,
                "ticket": request.ticket,
                "due_by": format_time(due_by),
                **counts,
            },
        )
        if counts["due"] == 0:
            _complete(tx, erasure_id)
    return {"erasure_id": erasure_id, "state": _state_after(counts), **counts}


def _state_after(counts: dict[str, int]) -> str:
    """An erasure with nothing left to delete completes at once."""
    return (ErasureState.OPEN if counts["due"] else ErasureState.COMPLETED).value


def _records_of(conn: Connection, digests: list[str]) -> list[Row[Any]]:
    """Every record of the subject (one per provider and ID), found by index (the ids first:
    PostgreSQL cannot compare the JSON metadata a DISTINCT over whole rows would need)."""
    s, r = RECORD_SUBJECTS.c, RECORDS.c
    ids = (
        select(r.id)
        .join(RECORD_SUBJECTS, (s.provider == r.provider) & (s.response_id == r.response_id))
        .where(s.subject.in_(digests))
    )
    return list(conn.execute(select(RECORDS).where(r.id.in_(ids)).order_by(r.id)).all())


def _holds_now(conn: Connection, policies: PolicySet | None) -> tuple[Hold, ...]:
    """The holds in force: the file's (`policies`) then the ledger's, as the ledger has them
    now; the ledger's alone when no policies are given."""
    if policies is None:
        return active_holds(conn)
    return with_ledger_holds(conn, policies).holds


def _hold_over(row: Row[Any], holds: tuple[Hold, ...]) -> str | None:
    """The first of `holds` that covers this record (as `decide` picks it), if any."""
    facts = queries.facts_of(row)
    return next((h.name for h in holds if h.covers(facts)), None)


def _preview(rows: list[Row[Any]], holds: tuple[Hold, ...]) -> dict[str, Any]:
    """What a request would do, written nowhere."""
    would, withheld, gone = [], [], 0
    for row in rows:
        over = _hold_over(row, holds) if row.state == State.FAILED else None
        if row.state == State.HELD:
            withheld.append(_item(row, hold=row.hold))
        elif over is not None:
            withheld.append(_item(row, hold=over))
        elif row.state in (State.PENDING, State.FAILED):
            would.append(_item(row))
        else:
            gone += 1
    return {
        "dry_run": True,
        "matched": len(rows),
        "would_delete": would,
        "withheld": withheld,
        "already_gone": gone,
    }


def _item(row: Any, **extra: Any) -> dict[str, Any]:
    """One record as a request's lists show it."""
    return {"response_id": row.response_id, "provider": row.provider, "state": row.state, **extra}


def _apply(
    tx: Tx, rows: list[Row[Any]], erasure_id: str, holds: tuple[Hold, ...]
) -> tuple[dict[str, int], list[tuple[str, int, str | None]]]:
    """Make each open or failed record due now (a failed one a hold covers is reopened held);
    the counts, and the request's items."""
    counts = Counter({"matched": len(rows), "due": 0, "reopened": 0, "withheld": 0})
    items: list[tuple[str, int, str | None]] = []
    for row in rows:
        over = _hold_over(row, holds) if row.state == State.FAILED else None
        if over is not None:  # still at the provider, and a hold wins: held, as a retry does
            _reopen_held(tx, row, erasure_id, over)
        if row.state == State.HELD or over is not None:
            counts["withheld"] += 1
            items.append((erasure_id, row.id, row.hold or over))
            continue
        items.append((erasure_id, row.id, None))
        if row.state not in (State.PENDING, State.FAILED):
            counts["already_gone"] += 1
            continue
        counts["due"] += 1
        _make_due(tx, row, erasure_id)
        if row.state == State.FAILED:
            counts["reopened"] += 1
    return {k: counts[k] for k in ("matched", "due", "reopened", "withheld", "already_gone")}, items


def _reopen_held(tx: Tx, row: Row[Any], erasure_id: str, hold: str) -> None:
    """A failed record a hold covers: open again under that hold (no attempts, no lease, no
    due time, its deadline kept), as `retention retry` reopens one, with `response.requeued`."""
    queries.update_record(
        tx.conn,
        row.id,
        state=State.HELD.value,
        hold=hold,
        due_at=None,
        attempts=0,
        last_status=None,
        last_error=None,
        closed_at=None,
        lease_owner=None,
        lease_until=None,
        updated_at=tx.now,
    )
    tx.record_event(
        Event.RESPONSE_REQUEUED,
        row,
        details={
            "reason": "erasure",
            "erasure_id": erasure_id,
            "state": State.HELD.value,
            "hold": hold,
        },
    )


def _make_due(tx: Tx, row: Row[Any], erasure_id: str) -> None:
    """One record due at the request (never earlier than its own deadline had it already
    passed), with its event."""
    moved = row.deadline > tx.now
    values: dict[str, Any] = {"updated_at": tx.now}
    if row.erasure_id is None or row.state == State.FAILED:  # else an earlier request's own
        values["erasure_id"] = erasure_id
    if moved:
        values.update(deadline=tx.now, deadline_basis=Basis.ERASURE.value)
    common = {
        "response_id": row.response_id,
        "provider": row.provider,
        "account": row.account,
        "policy": row.policy,
        "deadline": values.get("deadline", row.deadline),
    }
    if row.state == State.FAILED:  # it is still at the provider: try again, from scratch
        values.update(
            state=State.PENDING.value,
            attempts=0,
            last_status=None,
            last_error=None,
            closed_at=None,
            due_at=tx.now,
        )
        queries.update_record(tx.conn, row.id, **values)
        tx.event(
            Event.RESPONSE_REQUEUED,
            **common,
            details={"reason": "erasure", "erasure_id": erasure_id, "state": State.PENDING.value},
        )
        return
    if moved or row.due_at is None:  # already due: a retry keeps its backoff
        values["due_at"] = tx.now
    queries.update_record(tx.conn, row.id, **values)
    if moved:
        tx.event(
            Event.RESPONSE_DEADLINE_CHANGED,
            **common,
            details={
                "reason": "erasure",
                "erasure_id": erasure_id,
                "previous_deadline": format_time(row.deadline),
                "previous_deadline_basis": row.deadline_basis,
            },
        )


def settle(ledger: Ledger, now: datetime | None = None) -> list[str]:
    """Complete each open request none of whose records is still to be deleted, and mark the
    ones past their deadline overdue; returns the ids completed."""
    with ledger.read() as conn:
        open_ids = (
            conn.execute(select(Erasure.id).where(Erasure.state == ErasureState.OPEN.value))
            .scalars()
            .all()
        )
    if not open_ids:
        return []
    done = []
    with ledger.write() as tx:
        when = now or tx.now
        for erasure_id in open_ids:
            row = tx.conn.execute(select(Erasure).where(Erasure.id == erasure_id)).one()
            if row.state != ErasureState.OPEN:  # another replica got here first
                continue
            if _left(tx.conn, erasure_id) == 0:
                _complete(tx, erasure_id)
                done.append(erasure_id)
            elif when > row.due_by and row.overdue_at is None:
                tx.conn.execute(
                    update(Erasure).where(Erasure.id == erasure_id).values(overdue_at=tx.now)
                )
                tx.event(
                    Event.ERASURE_OVERDUE,
                    details={
                        "erasure_id": erasure_id,
                        "due_by": format_time(row.due_by),
                        "left": _left(tx.conn, erasure_id),
                    },
                )
    return done


def _left(conn: Connection, erasure_id: str) -> int:
    """How many of a request's records are still to be deleted."""
    i, r = ERASURE_ITEMS.c, RECORDS.c
    return int(
        conn.execute(
            select(func.count())
            .select_from(ERASURE_ITEMS.join(RECORDS, r.id == i.record_id))
            .where(
                i.erasure_id == erasure_id,
                i.withheld.is_(None),
                r.state == State.PENDING.value,
            )
        ).scalar_one()
    )


def _complete(tx: Tx, erasure_id: str) -> None:
    """Close a request: `erasure.completed` with what became of each of its records, and the
    digest of their list (`records_sha256`) that its receipt proves the list by."""
    # imported here: the receipt format (and its crypto stack) stays out of the sweep's imports
    from retention.audit.erasure_receipt_format import records_digest

    standing = _standing(tx.conn, erasure_id)
    progress = _progress(standing)
    tx.conn.execute(
        update(Erasure)
        .where(Erasure.id == erasure_id)
        .values(state=ErasureState.COMPLETED.value, completed_at=tx.now)
    )
    tx.event(
        Event.ERASURE_COMPLETED,
        details={
            "erasure_id": erasure_id,
            **progress["counts"],
            "withheld_records": progress["withheld"],
            "records_sha256": records_digest(
                {"provider": row.provider, "response_id": row.response_id, "outcome": outcome}
                for row, outcome, _ in standing
            ),
        },
    )


def progress_of(conn: Connection, erasure_id: str) -> dict[str, Any]:
    """Where each record of a request stands: counts by outcome, and the withheld ones."""
    return _progress(_standing(conn, erasure_id))


def _standing(conn: Connection, erasure_id: str) -> list[Standing]:
    """Each record of a request with its outcome (deleted, absent, failed, pending or withheld)
    and the hold that withholds it, by provider then response ID (code point order, wherever
    the database's collation would put them)."""
    i, r = ERASURE_ITEMS.c, RECORDS.c
    rows = conn.execute(
        select(r.response_id, r.provider, r.state, r.hold, i.withheld)
        .select_from(ERASURE_ITEMS.join(RECORDS, r.id == i.record_id))
        .where(i.erasure_id == erasure_id)
    ).all()
    standing: list[Standing] = []
    for row in sorted(rows, key=lambda row: (row.provider, row.response_id)):
        # held when the request came (whatever became of it since: once released, its own
        # deadline applies), or held since (a hold wins)
        hold = row.withheld or (row.hold if row.state == State.HELD else None)
        standing.append((row, "withheld" if hold is not None else str(row.state), hold))
    return standing


def _progress(standing: list[Standing]) -> dict[str, Any]:
    """Counts by outcome, and the withheld records with their holds."""
    counts = Counter({k: 0 for k in ("deleted", "absent", "failed", "pending", "withheld")})
    withheld = []
    for row, outcome, hold in standing:
        counts[outcome] += 1
        if outcome == "withheld":
            withheld.append(
                {"response_id": row.response_id, "provider": row.provider, "hold": hold}
            )
    return {"counts": {"matched": len(standing), **counts}, "withheld": withheld}


def erasure_status(ledger: Ledger, erasure_id: str) -> dict[str, Any]:
    """A request and its progress (InputError when there is no such request)."""
    with ledger.read() as conn:
        row = conn.execute(select(Erasure).where(Erasure.id == erasure_id)).one_or_none()
        if row is None:
            raise InputError(f"no erasure request {quote(erasure_id)}")
        progress = progress_of(conn, erasure_id)
    return {**_summary(row), **progress}


def list_erasures(ledger: Ledger, *, state: str | None = None) -> list[dict[str, Any]]:
    """Every request, newest first."""
    query = select(Erasure).order_by(Erasure.requested_at.desc(), Erasure.id)
    if state:
        query = query.where(Erasure.state == state)
    with ledger.read() as conn:
        return [_summary(row) for row in conn.execute(query).all()]


def _summary(row: Any) -> dict[str, Any]:
    """A request as commands and the HTTP API show it."""
    return {
        "erasure_id": row.id,
        "state": row.state,
        "requested_at": format_time(row.requested_at),
        "due_by": format_time(row.due_by),
        "completed_at": format_time(row.completed_at),
        "overdue": row.overdue_at is not None,
        "reason": row.reason,
        "ticket": row.ticket,
        "subjects": json.loads(row.subjects),
    }
