"""Put failed IDs back to pending after an incident: `retention retry`.

Each ID starts again with no attempts, due now or at its deadline when that is later (never
earlier), under the policies in force now: a hold placed since it failed keeps it, and a longer
TTL moves its deadline. Its state change and its `response.requeued` event (with the reason
and the actor) commit together. `requeue_columns` is pure; the rest reads and writes the
ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.times import format_time
from retention.core.vocabulary import Event, State
from retention.errors import UsageError
from retention.ledger import queries
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger
from retention.ledger.locks import policies_steady
from retention.services import chains

ID_CHUNK = 500  # named IDs asked for at a time


@dataclass(frozen=True, slots=True)
class Selection:
    """Which failed records to requeue: every filter given must match."""

    ids: tuple[str, ...] = ()
    provider: str | None = None
    policy: str | None = None
    since: datetime | None = None  # failed at or after


def requeue_columns(row: Any, policies: PolicySet, now: datetime) -> dict[str, Any]:
    """The columns that make a failed record open again: no attempts and no last error; its
    recorded deadline, or the one the policies in force give when that is later; held when a
    hold covers it now, else due at `now` or at its deadline, whichever is later."""
    decision = decide(queries.facts_of(row), policies)
    policy, deadline, basis = row.policy, row.deadline, row.deadline_basis
    if decision.deadline > deadline:
        policy, deadline, basis = decision.policy, decision.deadline, decision.basis
    return {
        "state": (State.HELD if decision.hold else State.PENDING).value,
        "policy": policy,
        "deadline": deadline,
        "deadline_basis": basis,
        "hold": decision.hold,
        "due_at": None if decision.hold else max(now, deadline),
        "attempts": 0,
        "last_status": None,
        "last_error": None,
        "closed_at": None,
        "lease_owner": None,
        "lease_until": None,
    }


def item(row: Any, columns: dict[str, Any]) -> dict[str, Any]:
    """What the user sees of one requeued record: where it goes and what it failed with."""
    return {
        "response_id": row.response_id,
        "provider": row.provider,
        "policy": columns["policy"],
        "state": columns["state"],
        "hold": columns["hold"],
        "deadline": format_time(columns["deadline"]),
        "due_at": format_time(columns["due_at"]),
        "failed_at": format_time(row.closed_at),
        "previous_attempts": row.attempts,
        "previous_status": row.last_status,
        "previous_error": row.last_error,
    }


def left_alone(ledger: Ledger, selection: Selection) -> list[dict[str, Any]]:
    """Named IDs that are tracked but not failed (or not of the provider and policy given),
    with their state; UsageError when a named ID is not tracked at all."""
    if not selection.ids:
        return []
    with ledger.read() as conn:
        rows = queries.rows_for_ids(conn, selection.ids)
    unknown = sorted(set(selection.ids) - {r.response_id for r in rows})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if unknown[5:] else "")
        raise UsageError(f"not tracked: {shown}; nothing was requeued")
    return [
        {"response_id": r.response_id, "provider": r.provider, "state": r.state}
        for r in sorted(rows, key=lambda r: (r.response_id, r.provider))
        if not _selected(r, selection)
    ]


def _selected(row: Any, selection: Selection) -> bool:
    """Whether a record passes the selection's filters (as `queries.failed_query` asks)."""
    return (
        row.state == State.FAILED
        and selection.provider in (None, row.provider)
        and selection.policy in (None, row.policy)
        and (
            selection.since is None
            or (row.closed_at is not None and row.closed_at >= selection.since)
        )
    )


def _failed(conn: Connection, selection: Selection) -> Iterator[list[Row[Any]]]:
    """The selected failed records in batches (named IDs asked for a chunk at a time)."""
    ids = sorted(set(selection.ids))
    for start in range(0, max(len(ids), 1), ID_CHUNK):
        query = queries.failed_query(
            ids=ids[start : start + ID_CHUNK],
            provider=selection.provider,
            policy=selection.policy,
            since=selection.since,
        )
        yield from queries.iter_failed(conn, query)


def preview(
    ledger: Ledger, policies: PolicySet, selection: Selection, now: datetime
) -> list[dict[str, Any]]:
    """What `requeue` would do at `now`, changing nothing."""
    with ledger.read() as conn:
        return [
            item(row, requeue_columns(row, policies, now))
            for rows in _failed(conn, selection)
            for row in rows
        ]


def requeue(
    ledger: Ledger, policies: PolicySet, selection: Selection, *, reason: str
) -> list[dict[str, Any]]:
    """Requeue the selected failed records, each with its `response.requeued` event, in one
    transaction, under the ledger's holds as they are in it (no hold is placed or lifted
    meanwhile: a record a hold placed just now covers comes back held)."""
    done: list[dict[str, Any]] = []
    chains_touched: set[tuple[str, str]] = set()
    with ledger.write() as tx:
        policies_steady(tx.conn)
        policies = with_ledger_holds(tx.conn, policies)
        for rows in _failed(tx.conn, selection):
            for row in rows:
                columns = requeue_columns(row, policies, tx.now)
                if not queries.requeue_failed(tx.conn, row.id, updated_at=tx.now, **columns):
                    continue
                done.append(item(row, columns))
                if row.chain_root is not None:
                    chains_touched.add((row.provider, row.chain_root))
                tx.record_event(
                    Event.RESPONSE_REQUEUED,
                    row,
                    policy=columns["policy"],
                    deadline=columns["deadline"],
                    details=_details(row, columns, reason),
                )
            tx.flush()  # one batch of events in memory at a time
        # a failed turn's deadline was left behind while its conversation went on: reopened,
        # it takes its chain's deadline again (keep_chains_intact), never an earlier one
        for provider, root in sorted(chains_touched):
            chains.refresh(tx, provider, root, policies)
    return done


def _details(row: Any, columns: dict[str, Any], reason: str) -> dict[str, Any]:
    """The event's details: why, what it failed with, and where it goes now."""
    details = {
        "reason": reason,
        "state": columns["state"],
        "due_at": format_time(columns["due_at"]),
        "previous_attempts": row.attempts,
        "previous_status": row.last_status,
        "previous_error": row.last_error,
        "failed_at": format_time(row.closed_at),
    }
    if columns["hold"]:
        details["hold"] = columns["hold"]
    return details
