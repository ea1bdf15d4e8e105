"""Issue erasure receipts from the ledger (`audit/erasure_receipt_format.py`): the proofs of a
completed request's `erasure.requested` and `erasure.completed` records, the list of its records
with what became of each by completion, the deletion receipt of each of them that was deleted
or absent then, and its withheld list.

The list is the one the completion signed (`records_sha256`), rebuilt from the trail as it
stood then, since a record may move on after its request completed (a failed one retried, a
withheld one released and deleted): a record the completion lists as withheld is `withheld`;
one with a `response.deleted` or `response.absent` record up to the completion is `deleted` or
`absent`; any other was `failed` (none is pending once its request completes). The bundle is
checked before it is returned, so a list that is not the signed one is never issued.

Per chain, one checkpoint signed by the current key covers every record the bundle proves
(written first when none does yet, as `audit receipt` does), and the chain's tree is hashed
once for all of its proofs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.erasure_receipt_format import (
    GONE,
    Bundle,
    Tree,
    build_erasure_receipt,
    build_proof,
    check_erasure_receipt,
    erasure_receipt_text,
)
from retention.audit.receipt_format import Receipt
from retention.audit.signatures import public_pem
from retention.core.quoting import quote
from retention.core.vocabulary import GONE_EVENTS, ErasureState, Event, State
from retention.errors import AuditError, InputError, UsageError
from retention.evidence.checkpoints import Publish, write_checkpoint
from retention.evidence.receipts import _covering_checkpoint, _leaves
from retention.evidence.signing_key import Signer
from retention.ledger.ledger import Ledger
from retention.ledger.models import ERASURE_ITEMS, RECORDS, AuditEvent, Erasure

BATCH = 500  # response IDs per query of their deletion records

Record = dict[str, Any]


def issue_erasure_receipt(
    ledger: Ledger,
    erasure_id: str,
    *,
    signer: Signer | None,
    interval: timedelta,
    publish: Publish | None = None,
) -> Bundle:
    """The checked receipt of a completed erasure request (InputError when there is no such
    request, UsageError while it is still open)."""
    with ledger.read() as conn:
        row = conn.execute(select(Erasure).where(Erasure.id == erasure_id)).one_or_none()
        if row is None:
            raise InputError(f"no erasure request {quote(erasure_id)}")
        if row.state != ErasureState.COMPLETED or row.completed_at is None:
            raise UsageError(
                f"erasure {erasure_id} is still {row.state}: its receipt is issued once it "
                f"completes (`retention erasure status {erasure_id}`)"
            )
        requested = _erasure_record(conn, Event.ERASURE_REQUESTED, erasure_id, row.requested_at)
        completed = _erasure_record(conn, Event.ERASURE_COMPLETED, erasure_id, row.completed_at)
        entries, deletions = _records(conn, erasure_id, completed, row.completed_at)
    if signer is None:
        raise AuditError("no signing key: a receipt needs a checkpoint signed by this ledger's key")
    proofs = _proofs(ledger, [requested, completed, *deletions], signer, interval, publish)
    bundle = build_erasure_receipt(proofs[0], proofs[1], proofs[2:], entries)
    reason = check_erasure_receipt(erasure_receipt_text(bundle), signer.public)
    if reason is not None:
        raise AuditError(f"the receipt of erasure {erasure_id} does not verify: {reason}")
    return bundle


def _erasure_record(conn: Connection, event: Event, erasure_id: str, at: datetime) -> Record:
    """The request's `event` record, written at `at` (the request's own time column)."""
    lines = conn.execute(
        select(AuditEvent.line).where(AuditEvent.ts == at, AuditEvent.event == event)
    ).scalars()
    for line in lines:
        record: Record = json.loads(line)
        if (record.get("details") or {}).get("erasure_id") == erasure_id:
            return record
    raise AuditError(f"the {event} record of erasure {erasure_id} is not in the ledger")


def _records(
    conn: Connection, erasure_id: str, completed: Record, completed_at: datetime
) -> tuple[list[dict[str, str]], list[Record]]:
    """The request's records with their outcomes when it completed, and the terminal record
    of each one deleted or absent then: its latest `response.deleted` or `response.absent` up
    to the completion, skipping those the completion lists as withheld (released and deleted
    since)."""
    withheld = {(w["provider"], w["response_id"]) for w in completed["details"]["withheld_records"]}
    i, r = ERASURE_ITEMS.c, RECORDS.c
    rows = conn.execute(
        select(r.provider, r.response_id, r.state)
        .select_from(ERASURE_ITEMS.join(RECORDS, r.id == i.record_id))
        .where(i.erasure_id == erasure_id)
    ).all()
    # deleted and absent are final: a record that is neither now was neither at completion
    gone = {
        (row.provider, row.response_id)
        for row in rows
        if row.state in (State.DELETED, State.ABSENT)
    }
    found = _gone_records(conn, gone - withheld, completed_at)
    entries = []
    for place in sorted((row.provider, row.response_id) for row in rows):
        if place in withheld:
            outcome = "withheld"
        elif place in found:
            outcome = GONE[found[place]["event"]]
        else:
            outcome = "failed"  # not pending, since the request completed
        entries.append({"provider": place[0], "response_id": place[1], "outcome": outcome})
    return entries, [found[place] for place in sorted(found)]


def _gone_records(
    conn: Connection, wanted: set[tuple[str, str]], completed_at: datetime
) -> dict[tuple[str, str], Record]:
    """The latest `response.deleted` or `response.absent` record up to `completed_at` of each
    (provider, response ID) wanted that has one."""
    by_id: dict[str, set[str]] = defaultdict(set)
    for name, response_id in wanted:
        by_id[response_id].add(name)
    found: dict[tuple[str, str], tuple[datetime, int, Record]] = {}
    ids = sorted(by_id)
    for start in range(0, len(ids), BATCH):
        for ts, seq, line in conn.execute(
            select(AuditEvent.ts, AuditEvent.seq, AuditEvent.line).where(
                AuditEvent.response_id.in_(ids[start : start + BATCH]),
                AuditEvent.event.in_(GONE_EVENTS),
                AuditEvent.ts <= completed_at,
            )
        ).all():
            record: Record = json.loads(line)
            provider = record.get("provider")
            if not isinstance(provider, str) or provider not in by_id[record["response_id"]]:
                continue
            place = (provider, record["response_id"])
            if place not in found or (ts, seq) > found[place][:2]:
                found[place] = (ts, seq, record)
    return {place: record for place, (_, _, record) in found.items()}


def _proofs(
    ledger: Ledger,
    records: list[Record],
    signer: Signer,
    interval: timedelta,
    publish: Publish | None,
) -> list[Receipt]:
    """The proof of each record, in the order given: per chain one covering checkpoint signed
    by the current key (written when none covers the chain's last record here yet)."""
    pem = public_pem(signer.public)
    proofs: dict[tuple[str, int], Receipt] = {}
    for chain, seqs in _by_chain(records).items():
        checkpoint = _checkpoint_over(ledger, chain, max(seqs), signer, interval, publish)
        with ledger.read() as conn:
            tree = Tree(_leaves(conn, chain, checkpoint["details"]["covers_seq"]))
        for record in seqs.values():
            try:
                proofs[chain, record["seq"]] = build_proof(record, tree, checkpoint, pem)
            except ValueError as exc:
                raise AuditError(f"audit chain {chain}: {exc}") from None
    return [proofs[r["chain"], r["seq"]] for r in records]


def _by_chain(records: Iterable[Record]) -> dict[str, dict[int, Record]]:
    """Records by chain, then by seq."""
    chains: dict[str, dict[int, Record]] = defaultdict(dict)
    for record in records:
        chains[record["chain"]][record["seq"]] = record
    return chains


def _checkpoint_over(
    ledger: Ledger,
    chain: str,
    seq: int,
    signer: Signer,
    interval: timedelta,
    publish: Publish | None,
) -> Record:
    """The first checkpoint of `chain` after `seq` signed by the current key (written now when
    there is none yet)."""
    with ledger.read() as conn:
        checkpoint = _covering_checkpoint(conn, chain, seq, signer.fingerprint)
    if checkpoint is None:
        write_checkpoint(ledger, signer, interval, chain=chain, publish=publish)
        with ledger.read() as conn:
            checkpoint = _covering_checkpoint(conn, chain, seq, signer.fingerprint)
    if checkpoint is None:  # pragma: no cover - the checkpoint just written covers it
        raise AuditError(f"audit chain {chain}: no checkpoint covers seq {seq}")
    return checkpoint
