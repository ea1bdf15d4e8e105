"""Enrol response IDs in the ledger: each gets its policy, deadline and state, and an event.

An ID already tracked is left as it was, except that an earlier `created_at` tightens its open
deadline (services/tightening.py)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import islice
from typing import Any

from sqlalchemy import Connection

from retention.config.settings import Settings
from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.record_input import NewRecord
from retention.core.records import ResponseFacts
from retention.core.subjects import pseudonymised
from retention.core.times import format_time
from retention.core.vocabulary import Event, ObjectKind
from retention.ledger import queries
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger, Tx
from retention.ledger.locks import policies_steady
from retention.services import chains, conversation_activity, subject_index, tightening
from retention.services.subject_key import subject_key

CHUNK = 5_000  # records enrolled, and audit events sealed, at a time within one transaction


@dataclass(frozen=True, slots=True)
class EnrolResult:
    """How many records were new, how many the ledger already had, and how many of those got
    an earlier deadline from an earlier `created_at`."""

    accepted: int
    duplicates: int
    tightened: int = 0


def enrol(
    ledger: Ledger,
    settings: Settings,
    policies: PolicySet,
    records: Iterable[NewRecord],
    *,
    source: str | None = None,
    verdict: Callable[[], Exception | None] | None = None,
) -> EnrolResult:
    """Track `records`; an ID already tracked for its provider is left as it was, but for a
    deadline that an earlier `created_at` tightens.

    One transaction, written a chunk at a time, so memory stays flat however many records
    stream in. When the stream ends, `verdict()` may return an error: it is raised and
    nothing is written (how an import stays all or nothing when a late line is bad)."""
    accepted = seen = tightened = 0
    with ledger.write() as tx:
        iterator = iter(records)
        while chunk := list(islice(iterator, CHUNK)):
            new, moved = _enrol_chunk(tx, settings, policies, chunk, source=source)
            accepted += len(new)
            tightened += moved
            seen += len(chunk)
            tx.flush()
        error = verdict() if verdict is not None else None
        if error is not None:
            raise error
    return EnrolResult(accepted=accepted, duplicates=seen - accepted, tightened=tightened)


def enrol_group(
    ledger: Ledger,
    settings: Settings,
    policies: PolicySet,
    batches: list[list[NewRecord]],
    *,
    source: str | None = None,
    check: Callable[[Connection], None] | None = None,
    publish_later: bool = False,
) -> list[EnrolResult]:
    """Track several requests' records in ONE transaction (group commit: one fsync and one
    audit append for all of them), each batch counted on its own, in order: an ID that an
    earlier batch of the group brought is a duplicate for a later one, as it would be had
    they committed one after the other. `check(conn)` runs first in the transaction, under
    the policies lock, and may raise to refuse the group. `publish_later`: as `Ledger.write`
    takes it."""
    everything = [record for batch in batches for record in batch]
    new: set[tuple[str, str]] = set()
    with ledger.write(publish_later=publish_later) as tx:  # a few statements for the group
        if check is not None:
            policies_steady(tx.conn)  # what it checks holds until the commit
            check(tx.conn)
        for start in range(0, len(everything), CHUNK):
            fresh, _ = _enrol_chunk(
                tx, settings, policies, everything[start : start + CHUNK], source=source
            )
            new |= fresh
            tx.flush()
    results = []
    provider_of = _provider_names(settings)
    for batch in batches:  # each new ID is the first batch's that sent it
        accepted = 0
        for record in batch:
            key = (provider_of(record.provider), record.response_id)
            if key in new:
                new.discard(key)
                accepted += 1
        results.append(EnrolResult(accepted=accepted, duplicates=len(batch) - accepted))
    return results


def enrol_in(
    tx: Tx,
    settings: Settings,
    policies: PolicySet,
    records: list[NewRecord],
    *,
    source: str | None = None,
) -> int:
    """Enrol within the caller's transaction; returns how many were new."""
    return len(_enrol_chunk(tx, settings, policies, records, source=source)[0])


def _enrol_chunk(
    tx: Tx,
    settings: Settings,
    policies: PolicySet,
    records: list[NewRecord],
    *,
    source: str | None = None,
) -> tuple[set[tuple[str, str]], int]:
    """Enrol one chunk: the (provider, ID) of each new record, and how many deadlines of
    tracked IDs tightened.
    The holds placed in the ledger are those it has now, in this transaction (a hold placed
    since `policies` were read holds an ID it lists when it is recorded). The policies lock,
    shared, keeps them so until this transaction commits (ledger/locks.py): a hold being placed
    waits for these records, and sees them."""
    policies_steady(tx.conn)
    policies = with_ledger_holds(tx.conn, policies)
    by_provider: dict[str, dict[str, NewRecord]] = defaultdict(dict)
    repeats: dict[str, list[NewRecord]] = defaultdict(list)  # an ID again, with a created_at
    provider_of = _provider_names(settings)
    for record in records:
        name = provider_of(record.provider)
        first = by_provider[name].setdefault(record.response_id, record)
        if first is not record and record.created_at is not None:
            repeats[name].append(record)
    accepted: set[tuple[str, str]] = set()
    tightened = 0
    for provider, items in by_provider.items():
        known = queries.existing_ids(tx.conn, provider, items)
        fresh = [r for rid, r in items.items() if rid not in known]
        account = settings.providers[provider].account_id
        fresh = _as_stored(fresh, settings)  # a person's value never reaches the ledger
        rows = [_record_with_events(tx, r, provider, account, policies, source) for r in fresh]
        subject_index.index_rows(tx.conn, rows, settings.erasure.subject_keys)
        touched = chains.assign_roots(tx.conn, provider, rows)
        queries.insert_records(tx.conn, rows)
        accepted.update((provider, row["response_id"]) for row in rows)
        if policies.keeps_chains:
            for root in touched:
                chains.refresh(tx, provider, root, policies)
        turns = _turns(items.values(), tx.now)
        if turns:
            conversation_activity.note_turns(
                tx,
                policies,
                provider,
                turns,
                lambda made: _enrol_chunk(tx, settings, policies, made, source=source),
                source=source,
            )
        later = [r for rid, r in items.items() if rid in known and r.created_at is not None]
        if later or repeats[provider]:
            tightened += tightening.tighten(
                tx, policies, provider, later + repeats[provider], source=source
            )
    return accepted, tightened


def _turns(records: Iterable[NewRecord], now: datetime) -> dict[str, tuple[datetime, str]]:
    """The conversations these records are turns of, each with the time of its activity and
    the response that made it. A turn counts from when the ledger learns of it, never from
    the response's `created_at`: that is whole seconds, and earlier than the items the turn
    added, so counting from it could delete the conversation early."""
    return {r.conversation: (now, r.response_id) for r in records if r.conversation is not None}


def _provider_names(settings: Settings) -> Callable[[str | None], str]:
    """The configured name of the provider a record names (or of the only one when it names
    none), looked up once per name given."""
    return cache(lambda given: settings.provider(given).name)


def _as_stored(records: list[NewRecord], settings: Settings) -> list[NewRecord]:
    """The records with each subject value replaced by its digest, as the ledger keeps them
    and as the policies in force (services/policies_in_force.py) match them."""
    keys = settings.erasure.subject_keys
    if not any(k in r.metadata for r in records for k in keys):
        return records
    key = subject_key(settings.erasure.key_file)
    return [
        dataclasses.replace(r, metadata=pseudonymised(r.metadata, key, keys)[0])
        if any(k in r.metadata for k in keys)
        else r
        for r in records
    ]


def _record_with_events(
    tx: Tx,
    record: NewRecord,
    provider: str,
    account: str | None,
    policies: PolicySet,
    source: str | None,
) -> dict[str, Any]:
    """Queue the events of one new response on `tx` (`response.recorded`, and
    `response.held` under a hold), and return its records row."""
    conversation = record.object == ObjectKind.CONVERSATION
    facts = ResponseFacts(
        response_id=record.response_id,
        provider=provider,
        account=account,
        created_at=record.created_at,
        first_seen_at=tx.now,
        model=record.model,
        metadata=record.metadata,
        previous_response_id=record.previous_response_id,
        object=record.object,
        # a conversation's activity counts from when the ledger learns of it (see _turns)
        last_activity_at=tx.now if conversation else None,
    )
    decision = decide(facts, policies)
    common = {
        "response_id": facts.response_id,
        "provider": provider,
        "account": account,
        "policy": decision.policy,
        "deadline": decision.deadline,
    }
    tx.event(
        Event.RESPONSE_RECORDED,
        **common,
        details={
            "deadline_basis": decision.basis,
            "model": record.model,
            "created_at": format_time(record.created_at),
            "source": source,
            **({"object": record.object} if record.object != ObjectKind.RESPONSE else {}),
        },
    )
    if decision.hold:
        tx.event(Event.RESPONSE_HELD, **common, details={"hold": decision.hold})
    return {
        "provider": provider,
        "response_id": facts.response_id,
        "account": account,
        "created_at": facts.created_at,
        "first_seen_at": tx.now,
        "model": facts.model,
        "meta": dict(facts.metadata),
        "previous_response_id": facts.previous_response_id,
        "object": facts.object,
        "last_activity_at": facts.last_activity_at,
        "attempts": 0,
        "updated_at": tx.now,
        **queries.decision_columns(decision),
    }
