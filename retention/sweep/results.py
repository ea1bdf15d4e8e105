"""What one record's deletion came to, and how each outcome is written with its event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from retention.core.records import ClaimedRecord
from retention.core.times import format_time
from retention.core.vocabulary import (
    CLOSING,
    FINAL_EVENTS,
    Event,
    MetaKey,
    ObjectKind,
    Outcome,
    meta_key,
)
from retention.ledger import queries
from retention.ledger.ledger import Tx
from retention.provider.client import Answer

ERROR_PAUSE = timedelta(seconds=60)
# a record the provider cannot delete (its kind) waits this long before it is tried again
UNSUPPORTED_PAUSE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Result:
    """One outcome for one record (core/vocabulary.py says what each kind means)."""

    record: ClaimedRecord
    kind: Outcome
    attempt: int
    answer: Answer | None = None
    next_at: datetime | None = None
    verified: bool | None = None
    error: str | None = None
    items: int | None = None  # a deleted conversation's items, deleted before it


def apply_all(tx: Tx, results: list[Result], *, owner: str) -> None:
    """Write a batch of outcomes with their events: the common ones (deleted, absent) in one
    executemany, the rest one by one."""
    closing = []
    for result in results:
        if result.kind in CLOSING:
            closing.append(_closing_row(tx, result))
            _terminal_event(tx, result)
        else:
            apply(tx, result, owner=owner)
    queries.close_records(tx.conn, closing)
    deleted_kinds = {
        (r.record.provider, r.record.object)
        for r in results
        if r.kind == Outcome.DELETED and r.record.object == ObjectKind.CHAT_COMPLETION
    }
    for provider, kind in deleted_kinds:  # it can delete them again: a new refusal is news
        queries.delete_meta(tx.conn, cannot_delete_key(provider, kind))


def cannot_delete_key(provider: str, kind: str) -> str:
    """The meta key saying that `provider` cannot delete `kind`."""
    return meta_key(MetaKey.CANNOT_DELETE, f"{provider}/{kind}")


def first_time(tx: Tx, key: str, reason: str) -> bool:
    """Whether the ledger learns now what `key` says (it is set, with `reason` and since
    when): an event for it is written only then."""
    if queries.get_meta(tx.conn, key) is not None:
        return False
    queries.set_meta(tx.conn, key, json.dumps({"since": format_time(tx.now), "reason": reason}))
    return True


def _closing_row(tx: Tx, result: Result) -> dict[str, Any]:
    """The columns a deletion or absence sets."""
    answer = result.answer
    return {
        "rid": result.record.id,
        "state": result.kind,
        "closed_at": tx.now,
        "attempts": result.attempt,
        "last_status": answer.status if answer else None,
        "last_error": result.error or (answer.error if answer else None),
        "updated_at": tx.now,
    }


def _common(result: Result) -> dict[str, Any]:
    """The event fields every outcome carries."""
    record, answer = result.record, result.answer
    return {
        "response_id": record.response_id,
        "provider": record.provider,
        "account": record.account,
        "policy": record.policy,
        "deadline": record.deadline,
        "http_status": answer.status if answer else None,
        "attempt": result.attempt,
        "provider_request_id": answer.request_id if answer else None,
        "error": result.error or (answer.error if answer else None),
    }


def _terminal_event(tx: Tx, result: Result) -> None:
    """The event of a deleted, absent or failed record."""
    details: dict[str, Any] = {
        "deadline_basis": result.record.deadline_basis,
        "lag_s": int((tx.now - result.record.deadline).total_seconds()),
    }
    if result.verified is not None:
        details["verified"] = result.verified
    name = FINAL_EVENTS[result.kind]
    if result.record.object != ObjectKind.RESPONSE:
        details["object"] = result.record.object
        if result.kind == Outcome.DELETED and result.record.object == ObjectKind.CONVERSATION:
            name = Event.CONVERSATION_DELETED
            details["items"] = result.items if result.items is not None else 0
    tx.event(name, **_common(result), details=_erasure(result, details))


def apply(tx: Tx, result: Result, *, owner: str) -> None:
    """Write one outcome (other than deleted or absent, see `apply_all`) with its event.

    These changes apply only while the record is still pending under our lease: a hold or a
    new deadline that arrived meanwhile is never overwritten."""
    record = result.record
    if result.kind == Outcome.FAILED and queries.owned(tx.conn, record.id, owner):
        queries.close_records(tx.conn, [_closing_row(tx, result)])
        _terminal_event(tx, result)
    elif result.kind in (Outcome.RETRY, Outcome.DEFERRED, Outcome.UNCONFIRMED):
        _attempt_failed(tx, result, owner)
    elif result.kind == Outcome.UNSUPPORTED:  # the provider cannot: wait, charged nothing
        _due_again(tx, result, owner, tx.now + UNSUPPORTED_PAUSE)
    elif result.kind == Outcome.ERROR:  # something of ours broke: wait before trying again
        later = tx.now + ERROR_PAUSE
        _due_again(tx, result, owner, later)
        tx.event(
            Event.RESPONSE_DELETE_ATTEMPT_FAILED,
            **_common(result),
            details=_erasure(
                result, {"internal_error": True, "next_attempt_at": format_time(later)}
            ),
        )
    else:  # stopped, skipped, auth, or a failure on a changed record: give it back
        queries.update_owned(tx.conn, record.id, owner, lease_owner=None, lease_until=None)


def _due_again(tx: Tx, result: Result, owner: str, when: datetime) -> None:
    """Give the record back, due again at `when`, with why; no attempt is charged."""
    answered = {"last_status": result.answer.status} if result.answer else {}
    queries.update_owned(
        tx.conn,
        result.record.id,
        owner,
        lease_owner=None,
        lease_until=None,
        due_at=when,
        last_error=result.error,
        updated_at=tx.now,
        **answered,
    )


def _attempt_failed(tx: Tx, result: Result, owner: str) -> None:
    """A retry (now or in a later sweep): count it, keep Retry-After in the due time."""
    common = _common(result)
    values: dict[str, Any] = {
        "attempts": result.attempt,
        "last_status": common["http_status"],
        "last_error": common["error"],
        "updated_at": tx.now,
        "due_at": result.next_at,
    }  # Retry-After holds if we stop now
    if result.kind == Outcome.DEFERRED:
        values.update(lease_owner=None, lease_until=None)
    changed = queries.update_owned(tx.conn, result.record.id, owner, **values) == 0
    details = {"next_attempt_at": format_time(result.next_at)}
    if changed:
        details["record_changed"] = "held, deleted or re-planned meanwhile; left as it is"
    name = (
        Event.RESPONSE_DELETE_UNCONFIRMED
        if result.kind == Outcome.UNCONFIRMED
        else Event.RESPONSE_DELETE_ATTEMPT_FAILED
    )
    tx.event(name, **common, details=_erasure(result, details))


def _erasure(result: Result, details: dict[str, Any]) -> dict[str, Any]:
    """`details`, naming the erasure request that made the record due when one did."""
    if result.record.erasure_id is not None:
        details["erasure_id"] = result.record.erasure_id
    return details
