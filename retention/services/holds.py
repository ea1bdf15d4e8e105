"""Legal holds placed and lifted as audited acts (`retention hold`, `/v1/holds`).

A hold placed in the ledger acts exactly as one listed in the policies file: the policies in
force are the file's joined by the ledger's active holds (ledger/holds.py), and their digest is
what the ledger records as applied, so every other process (a daemon, a sweep) adopts a hold
placed here when it next reads the ledger's digest. Placing one writes its row, the event that
names it and `response.held` for each open record it newly covers, in one transaction; lifting
it (by hand, or by itself once its `until` has come) writes the event of its end and
`response.released` for each record no other hold keeps, whose deadline then applies again
(due at once when it has passed). The last look before each DELETE reads the ledger's holds
too (sweep/recheck.py), so a hold placed while a sweep runs is honoured before its next request.

Placing and lifting take the policies lock exclusively before they read anything
(ledger/locks.py): a policy sync, another hold, or an enrolment reading the holds waits for the
transaction to commit, so none of them acts on holds that are about to change.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from retention.config.settings import Settings
from retention.core.durations import parse_duration
from retention.core.ids import is_valid_id
from retention.core.policies import Hold, Match, PolicySet
from retention.core.quoting import quote
from retention.core.record_input import MAX_KEY, MAX_META, MAX_NAME, MAX_VALUE, object_flaw
from retention.core.subjects import pseudonymised
from retention.core.text import name_flaw, text_flaw
from retention.core.times import format_time, parse_time
from retention.core.vocabulary import Event, MetaKey, State
from retention.errors import ConflictError, InputError, NotFoundError
from retention.ledger import holds as rows
from retention.ledger import queries
from retention.ledger.ledger import Ledger, Tx
from retention.ledger.locks import policies_changing, policies_steady
from retention.ledger.models import RECORDS
from retention.services.subject_key import subject_key

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
MAX_IDS = 10_000
MAX_REASON = 1000  # characters
MAX_TICKET = 200
DURATION_LIKE = re.compile(r"\d+\s*[smhdw]|[Pp]\S*")
MATCH_KEYS = ("object", "provider", "account", "model", "metadata")
EXPIRY = "expiry"  # the actor that lifts a hold whose `until` has come
R = RECORDS.c


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """A checked request to place a hold."""

    name: str | None
    ids: tuple[str, ...]
    match: Match | None
    reason: str
    ticket: str | None
    until: datetime | None


def checked_hold(
    settings: Settings,
    *,
    ids: Any = None,
    match: Any = None,
    reason: Any = None,
    ticket: Any = None,
    until: Any = None,
    name: Any = None,
    now: datetime,
) -> HoldRequest:
    """Validate a request as given (CLI or HTTP); InputError names the field at fault, and
    never echoes a data subject's value."""
    if name is not None and (not isinstance(name, str) or NAME.fullmatch(name) is None):
        raise InputError(
            f"name: {quote(name)} is not a hold name: letters, digits and _.:- (128 at most, "
            "a letter or digit first)"
        )
    checked_ids = _checked_ids(ids)
    checked_match = _checked_match(match, settings)
    if not checked_ids and checked_match is None:
        raise InputError("ids: give the IDs to hold, a match, or both")
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("reason: say why (the matter, the order, who asked)")
    if len(reason) > MAX_REASON or text_flaw(reason):
        raise InputError(f"reason: at most {MAX_REASON} printable characters")
    if ticket is not None and (
        not isinstance(ticket, str) or not ticket or len(ticket) > MAX_TICKET or text_flaw(ticket)
    ):
        raise InputError(f"ticket: at most {MAX_TICKET} printable characters")
    if checked_match is not None:
        checked_match = _stored_form(checked_match, settings, reason, ticket)
    return HoldRequest(
        name=name,
        ids=checked_ids,
        match=checked_match,
        reason=reason.strip(),
        ticket=ticket,
        until=parse_until(until, now) if until is not None else None,
    )


def parse_until(value: Any, now: datetime) -> datetime:
    """When a hold ends: a time (RFC 3339, a date, unix seconds) or a duration from `now`
    (`3s`, `7d`, `P30D`); it must be later than `now`."""
    if isinstance(value, str) and not value.strip().replace(".", "", 1).isdigit():
        try:
            length = parse_duration(value)
        except ValueError as exc:
            if DURATION_LIKE.fullmatch(value.strip()):  # a duration, but a wrong one
                raise InputError(f"until: {exc}") from None
            length = None
        if length is not None:
            if not length:
                raise InputError("until: a hold's length must be more than 0")
            return now + length
    try:
        moment = parse_time(value, field="until")
    except InputError:
        raise InputError(
            "until: expected a time (RFC 3339 such as 2026-11-25T08:00:00Z, a date or unix "
            f"seconds) or a duration from now (90s, 7d, P30D), got {quote(value)}"
        ) from None
    if moment <= now:
        raise InputError(f"until: {format_time(moment)} has passed (now is {format_time(now)})")
    return moment


def _checked_ids(ids: Any) -> tuple[str, ...]:
    """The IDs to hold, each valid, in order, once each."""
    if ids is None:
        return ()
    if not isinstance(ids, list | tuple):
        raise InputError("ids: expected a list of response IDs")
    if len(ids) > MAX_IDS:
        raise InputError(f"ids: at most {MAX_IDS} a hold; a match selects more")
    for index, value in enumerate(ids):
        if not is_valid_id(value):
            raise InputError(
                f"ids[{index}]: invalid response ID {quote(value)}: must match "
                "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
            )
    return tuple(dict.fromkeys(ids))


def _checked_match(match: Any, settings: Settings) -> Match | None:
    """A match as a policies file writes one: `provider`, `account`, `model` (a glob) and
    `metadata` (exact string values); all given must hold."""
    if match is None:
        return None
    if not isinstance(match, Mapping):
        raise InputError('match: expected an object such as {"metadata": {"matter": "M-1"}}')
    for key in match:
        if key not in MATCH_KEYS:
            raise InputError(f"match: unknown key {quote(key)} (expected: {', '.join(MATCH_KEYS)})")
    fields: dict[str, str | None] = {}
    for key in ("provider", "account", "model"):
        value = match.get(key)
        if value is not None and (not isinstance(value, str) or not value or name_flaw(value)):
            raise InputError(f"match.{key}: expected a non-empty name, got {quote(value)}")
        if value is not None and len(value) > MAX_NAME:
            raise InputError(f"match.{key}: at most {MAX_NAME} characters")
        fields[key] = value
    if fields["provider"] is not None and fields["provider"] not in settings.providers:
        raise InputError(
            f"match.provider: {quote(fields['provider'])} is not a configured provider "
            f"({', '.join(settings.providers)})"
        )
    kind = match.get("object")
    if kind is not None and (flaw := object_flaw(kind)) is not None:
        raise InputError(f"match.object: {flaw}")
    metadata = match.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InputError("match.metadata: expected an object of names and string values")
    if len(metadata) > MAX_META:
        raise InputError(f"match.metadata: at most {MAX_META} keys")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY or name_flaw(key):
            raise InputError(
                f"match.metadata: {quote(key)} is not a metadata name (at most {MAX_KEY} "
                "characters)"
            )
        if not isinstance(value, str) or text_flaw(value):
            raise InputError(f"match.metadata.{key}: expected a string")
        if len(value) > MAX_VALUE:
            raise InputError(f"match.metadata.{key}: at most {MAX_VALUE} characters")
    if not metadata and kind is None and all(value is None for value in fields.values()):
        # a match of no condition selects every record: a hold on the whole ledger is a
        # policies file's `match: {}`, never an app's request
        raise InputError(
            "match: give at least one condition (object, provider, account, model or metadata.KEY)"
        )
    return Match(
        object=kind,
        provider=fields["provider"],
        account=fields["account"],
        model=fields["model"],
        metadata=dict(metadata),
    )


def _stored_form(match: Match, settings: Settings, reason: str, ticket: str | None) -> Match:
    """The match as the ledger keeps records: a subject's value replaced by its digest (the
    value is written nowhere, nor may the reason or ticket carry it)."""
    keys = settings.erasure.subject_keys
    values = [v for k, v in match.metadata.items() if k in keys]
    if not values:
        return match
    for text, field in ((reason, "reason"), (ticket or "", "ticket")):
        # a value of a few characters ("7") is in many honest reasons: only longer ones count
        if any(len(v) >= 4 and v.casefold() in text.casefold() for v in values):
            raise InputError(
                f"{field}: it holds a data subject's value, which the trail must never keep; "
                "say why without it"
            )
    stored, _ = pseudonymised(match.metadata, subject_key(settings.erasure.key_file), keys)
    return dataclasses.replace(match, metadata=stored)


def actor_here() -> str:
    """Who acts from this shell: `cli:` and the user's name."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        who = f"uid {os.getuid()}"
    return f"cli:{who}"


def place_hold(
    ledger: Ledger, policies: PolicySet, request: HoldRequest, *, actor: str
) -> dict[str, Any]:
    """Place a hold: its row, its event and `response.held` for each open record it newly
    covers, in one transaction; returns the hold as `hold ls` shows it, with the counts."""
    with ledger.write() as tx:
        policies_changing(tx.conn)  # before the digest, the holds and the records are read
        current = _in_step(tx, policies)
        name = request.name or _fresh_name(tx.conn, tx.now, current)
        _refuse_taken(tx.conn, name, current)
        hold = Hold(name, frozenset(request.ids), request.match, placed=True)
        rows.insert_hold(
            tx.conn,
            name=name,
            ids=request.ids,
            match=rows.match_doc(request.match),
            reason=request.reason,
            ticket=request.ticket,
            actor=actor,
            placed_at=tx.now,
            until=request.until,
        )
        to_hold, counts = _covered(tx.conn, hold, tx.now)
        after = rows.with_ledger_holds(tx.conn, policies)
        queries.set_meta(tx.conn, MetaKey.POLICY_DIGEST, after.digest())
        tx.event(
            Event.HOLD_PLACED,
            details={
                "hold": name,
                "reason": request.reason,
                "ticket": request.ticket,
                "actor": actor,
                "until": format_time(request.until),
                "ids": list(request.ids),
                "match": rows.match_doc(request.match),
                **counts,
            },
        )
        _hold_records(tx, name, to_hold)
        row = rows.by_name(tx.conn, name)
    assert row is not None
    return {**rows.view_of(row), **counts}


def _in_step(tx: Tx, policies: PolicySet) -> PolicySet:
    """The policies in force, with the ledger's holds as they are in this transaction;
    ConflictError when the ledger applies other policies than `policies` (a changed file this
    process has not read yet, or has read and another has not applied): a hold is placed or
    lifted only on the policies the ledger applies, never over them."""
    current = rows.with_ledger_holds(tx.conn, policies)
    if queries.get_meta(tx.conn, MetaKey.POLICY_DIGEST) != current.digest():
        raise ConflictError(
            f"the ledger applies other policies than {current.source} gives now; apply the "
            "file first (any command that records or sweeps does, the daemon on SIGHUP), "
            "then try again"
        )
    return current


def _fresh_name(conn: Connection, now: datetime, policies: PolicySet) -> str:
    """A name no hold has used: `hold-YYYYMMDD-` and four hex digits."""
    while True:
        name = f"hold-{now:%Y%m%d}-{secrets.token_hex(2)}"
        if rows.by_name(conn, name) is None and name not in _file_names(policies):
            return name


def _file_names(policies: PolicySet) -> set[str]:
    """The names of the policies file's holds."""
    return {h.name for h in policies.holds if not h.placed}


def _refuse_taken(conn: Connection, name: str, policies: PolicySet) -> None:
    """ConflictError when a hold of the ledger (lifted ones too) or of the file has `name`."""
    if name in _file_names(policies):
        raise ConflictError(f"name: {quote(name)} is a hold of {policies.source}; choose another")
    taken = rows.by_name(conn, name)
    if taken is not None:
        when = format_time(taken.lifted_at or taken.placed_at)
        what = "lifted" if taken.lifted_at else "placed"
        raise ConflictError(
            f"name: {quote(name)} is taken by a hold {what} at {when}; a name is used once"
        )


def _covered(conn: Connection, hold: Hold, now: datetime) -> tuple[list[int], dict[str, int]]:
    """The open records `hold` newly holds (by primary key), and what it found: `held` (newly
    held), `in_flight` (of those, leased by a sweep now: a DELETE that already passed its last
    look may still be sent), `already_held` (kept by another hold), `not_recorded` (listed IDs
    the ledger lacks: held when recorded), `failed` (listed IDs whose deletion failed: still at
    the provider, held if retried) and `closed` (listed IDs already deleted or absent)."""
    to_hold: dict[int, None] = {}
    counts = dict.fromkeys(
        ("held", "in_flight", "already_held", "not_recorded", "failed", "closed"), 0
    )
    seen: set[int] = set()

    def note(row: Any) -> None:
        if row.id in seen:
            return
        seen.add(row.id)
        if row.state == State.PENDING:
            to_hold[row.id] = None
            counts["held"] += 1
            if row.lease_until is not None and row.lease_until > now:
                counts["in_flight"] += 1
        elif row.state == State.HELD:
            counts["already_held"] += 1
        elif row.state == State.FAILED:
            counts["failed"] += 1
        else:
            counts["closed"] += 1

    if hold.ids:
        found = queries.rows_for_ids(conn, hold.ids)
        counts["not_recorded"] = len(hold.ids - {row.response_id for row in found})
        for row in found:
            note(row)
    if hold.match is not None:
        for batch in queries.iter_open(conn):
            for row in batch:
                if hold.match.matches(queries.facts_of(row)):
                    note(row)
    return list(to_hold), counts


def _hold_records(tx: Tx, name: str, record_ids: list[int]) -> None:
    """Hold each of these records still pending, with its `response.held`."""
    for chunk in _chunks(record_ids):
        for row in _rows(tx.conn, chunk):
            changed = tx.conn.execute(
                update(RECORDS)
                .where(R.id == row.id, R.state == State.PENDING.value)
                .values(state=State.HELD.value, hold=name, due_at=None, updated_at=tx.now)
            ).rowcount
            if changed:
                tx.record_event(Event.RESPONSE_HELD, row, details={"hold": name})
        tx.flush()  # a hold over many records keeps one batch of events in memory


def hold_escaped(ledger: Ledger, record_ids: list[int]) -> int:
    """Hold each of these records that is pending though a hold placed in the ledger covers
    it (left so by a race the policies lock now prevents, or by an older release), with its
    `response.held` and its lease dropped; how many. The last look before a DELETE calls it
    for the records it refuses for that reason (sweep/recheck.py), so such a record is held,
    not claimed and refused at every sweep."""
    held = 0
    with ledger.write() as tx:
        policies_steady(tx.conn)  # the holds stay as read until this commits
        placed = rows.active_holds(tx.conn)
        for chunk in _chunks(record_ids):
            for row in _rows(tx.conn, chunk):
                facts = queries.facts_of(row)
                hold = next((h for h in placed if h.covers(facts)), None)
                if hold is None or row.state != State.PENDING or row.hold is not None:
                    continue
                changed = tx.conn.execute(
                    update(RECORDS)
                    .where(R.id == row.id, R.state == State.PENDING.value, R.hold.is_(None))
                    .values(
                        state=State.HELD.value,
                        hold=hold.name,
                        due_at=None,
                        lease_owner=None,
                        lease_until=None,
                        updated_at=tx.now,
                    )
                ).rowcount
                if changed:
                    held += 1
                    tx.record_event(Event.RESPONSE_HELD, row, details={"hold": hold.name})
    return held


def lift_hold(
    ledger: Ledger,
    policies: PolicySet,
    name: str,
    *,
    reason: str,
    actor: str,
    expired: bool = False,
) -> dict[str, Any]:
    """Lift a hold placed in the ledger: its event and `response.released` for each record
    no other hold keeps (its deadline applies again), in one transaction."""
    if not isinstance(reason, str) or not reason.strip():
        raise InputError("reason: say why the hold ends")
    if len(reason) > MAX_REASON or text_flaw(reason):
        raise InputError(f"reason: at most {MAX_REASON} printable characters")
    with ledger.write() as tx:
        policies_changing(tx.conn)  # before the digest, the holds and the records are read
        current = _in_step(tx, policies)
        row = rows.by_name(tx.conn, name)
        if row is None:
            if name in _file_names(current):
                raise ConflictError(
                    f"hold {quote(name)} is listed in {current.source}: it ends when it is "
                    "removed from that file (the next command, or the daemon on SIGHUP, "
                    "applies the change)"
                )
            raise NotFoundError(f"no hold {quote(name)} (`retention hold ls` lists them)")
        if not rows.mark_lifted(tx.conn, name, at=tx.now, reason=reason.strip(), by=actor):
            raise ConflictError(
                f"hold {quote(name)} was lifted at {format_time(row.lifted_at)} by {row.lifted_by}"
            )
        after = rows.with_ledger_holds(tx.conn, policies)
        plan = _release_plan(tx.conn, name, after)
        released = [rid for rid, other in plan if other is None]
        due_now = _due_count(tx.conn, released, tx.now)
        counts = {
            "released": len(released),
            "still_held": len(plan) - len(released),
            "due_now": due_now,
        }
        queries.set_meta(tx.conn, MetaKey.POLICY_DIGEST, after.digest())
        tx.event(
            Event.HOLD_LIFTED,
            details={
                "hold": name,
                "reason": reason.strip(),
                "ticket": row.ticket,
                "actor": actor,
                "expired": expired,
                "until": format_time(row.until),
                **counts,
            },
        )
        _release_records(tx, name, plan)
        lifted = rows.by_name(tx.conn, name)
    assert lifted is not None
    return {**rows.view_of(lifted, held=0), **counts}


def _release_plan(conn: Connection, name: str, after: PolicySet) -> list[tuple[int, str | None]]:
    """Each record `name` kept held, with the hold that keeps it now (None: released)."""
    plan = []
    for row in rows.held_by(conn, name):
        other = after.hold_for(queries.facts_of(row))
        plan.append((row.id, other.name if other is not None else None))
    return plan


def _due_count(conn: Connection, record_ids: list[int], now: datetime) -> int:
    """How many of these records are past their deadline at `now`."""
    due = 0
    for chunk in _chunks(record_ids):
        due += sum(1 for row in _rows(conn, chunk) if row.deadline <= now)
    return due


def _release_records(tx: Tx, name: str, plan: list[tuple[int, str | None]]) -> None:
    """Release each record no other hold keeps (due at its own deadline, at once when it has
    passed), with `response.released`; the others now name the hold that keeps them."""
    others = dict(plan)
    for chunk in _chunks([rid for rid, _ in plan]):
        for row in _rows(tx.conn, chunk):
            other = others[row.id]
            still = R.id == row.id, R.state == State.HELD.value, R.hold == name
            if other is not None:
                tx.conn.execute(update(RECORDS).where(*still).values(hold=other, updated_at=tx.now))
                continue
            changed = tx.conn.execute(
                update(RECORDS)
                .where(*still)
                .values(
                    state=State.PENDING.value, hold=None, due_at=row.deadline, updated_at=tx.now
                )
            ).rowcount
            if changed:
                tx.record_event(Event.RESPONSE_RELEASED, row, details={"hold": name})
        tx.flush()


def lift_expired(ledger: Ledger, policies: PolicySet, now: datetime) -> list[dict[str, Any]]:
    """Lift every hold whose `until` has come (actor `expiry`); what each lifting did. One
    read when none has: cheap enough to ask every few seconds."""
    with ledger.read() as conn:
        names = rows.expired_names(conn, now)
    lifted = []
    for name in names:
        try:
            lifted.append(
                lift_hold(
                    ledger, policies, name, reason="its until passed", actor=EXPIRY, expired=True
                )
            )
        except ConflictError:
            with ledger.read() as conn:
                row = rows.by_name(conn, name)
            if row is None or row.lifted_at is None:  # not lifted: the policies moved on
                raise
            # else another process lifted it first
    return lifted


def list_holds(
    ledger: Ledger, policies: PolicySet, *, lifted: bool = False
) -> list[dict[str, Any]]:
    """Every hold in force (the policies file's, then the ledger's, oldest first), with how
    many records each keeps held; with `lifted`, the lifted ones too."""
    with ledger.read() as conn:
        counts = rows.held_counts(conn)
        placed = rows.all_rows(conn, lifted=lifted)
    listed = [rows.file_view(h, held=counts.get(h.name, 0)) for h in _file(policies)]
    return listed + [
        rows.view_of(row, held=0 if row.lifted_at else counts.get(row.name, 0)) for row in placed
    ]


def _file(policies: PolicySet) -> Iterable[Hold]:
    """The policies file's holds."""
    return (h for h in policies.holds if not h.placed)


def _chunks(items: list[int]) -> Iterable[list[int]]:
    """`items` in chunks the database takes in one IN list."""
    for start in range(0, len(items), queries.CHUNK):
        yield items[start : start + queries.CHUNK]


def _rows(conn: Connection, record_ids: list[int]) -> list[Any]:
    """These records, whole, by primary key."""
    return list(conn.execute(select(RECORDS).where(R.id.in_(record_ids)).order_by(R.id)).all())
