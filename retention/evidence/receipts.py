"""Issue deletion receipts from the ledger: find the deletion, a checkpoint that covers it
(writing one when none does yet), and the Merkle path between them (`audit/receipt_format.py`)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.merkle import leaf_hash
from retention.audit.receipt_format import (
    Receipt,
    build_receipt,
    check_receipt,
    receipt_text,
)
from retention.audit.signatures import public_pem
from retention.core.ids import validate_id
from retention.core.vocabulary import GONE_EVENTS, Event
from retention.errors import AuditError, UsageError
from retention.evidence.checkpoints import Publish, write_checkpoint
from retention.evidence.signing_key import Signer
from retention.ledger.ledger import Ledger
from retention.ledger.models import AuditEvent


def issue_receipt(
    ledger: Ledger,
    response_id: str,
    *,
    signer: Signer | None,
    interval: timedelta,
    publish: Publish | None = None,
) -> Receipt:
    """The checked receipt of the latest deletion of `response_id` (UsageError if none)."""
    validate_id(response_id)
    with ledger.read() as conn:
        record = _latest_deletion(conn, response_id)
    if record is None:
        raise UsageError(f"no deletion of {response_id} is recorded")
    if signer is None:
        raise AuditError("no signing key: a receipt needs a checkpoint signed by this ledger's key")
    chain, seq = record["chain"], record["seq"]
    with ledger.read() as conn:
        checkpoint = _covering_checkpoint(conn, chain, seq, signer.fingerprint)
    if checkpoint is None:
        write_checkpoint(ledger, signer, interval, chain=chain, publish=publish)
        with ledger.read() as conn:
            checkpoint = _covering_checkpoint(conn, chain, seq, signer.fingerprint)
    if checkpoint is None:  # pragma: no cover - the checkpoint just written covers it
        raise AuditError(f"audit chain {chain}: no checkpoint covers seq {seq}")
    with ledger.read() as conn:
        leaves = _leaves(conn, chain, checkpoint["details"]["covers_seq"])
    return _checked(record, leaves, checkpoint, signer)


def _latest_deletion(conn: Connection, response_id: str) -> dict[str, Any] | None:
    """The last `response.deleted` or `response.absent` record of the ID, in any chain."""
    line = conn.execute(
        select(AuditEvent.line)
        .where(AuditEvent.response_id == response_id, AuditEvent.event.in_(GONE_EVENTS))
        .order_by(AuditEvent.ts.desc(), AuditEvent.seq.desc())
        .limit(1)
    ).scalar()
    return json.loads(line) if line else None


def _covering_checkpoint(
    conn: Connection, chain: str, seq: int, key_fingerprint: str
) -> dict[str, Any] | None:
    """The first checkpoint after `seq` in `chain` signing a Merkle root with the current key."""
    lines = conn.execute(
        select(AuditEvent.line)
        .where(AuditEvent.chain == chain, AuditEvent.seq > seq)
        .where(AuditEvent.event == Event.AUDIT_CHECKPOINT)
        .order_by(AuditEvent.seq)
    ).scalars()
    # one signed by a key rotated away since would not verify under the key auditors pin now,
    # and one written before Merkle roots signs no root to prove inclusion in
    for line in lines:
        checkpoint: dict[str, Any] = json.loads(line)
        details = checkpoint["details"]
        if details.get("key_fingerprint") == key_fingerprint and "root_hash" in details:
            return checkpoint
    return None


def _leaves(conn: Connection, chain: str, size: int) -> list[bytes]:
    """The leaf hashes of records 1..size of `chain` (the hash column alone, in seq order)."""
    hashes = conn.execute(
        select(AuditEvent.hash)
        .where(AuditEvent.chain == chain, AuditEvent.seq >= 1, AuditEvent.seq <= size)
        .order_by(AuditEvent.seq)
    ).scalars()
    leaves = [leaf_hash(h) for h in hashes]
    if len(leaves) != size:
        raise AuditError(f"audit chain {chain}: records 1..{size} are not all in the ledger")
    return leaves


def _checked(
    record: dict[str, Any], leaves: list[bytes], checkpoint: dict[str, Any], signer: Signer
) -> Receipt:
    """The receipt, checked as an auditor will check it (AuditError when it fails)."""
    try:
        receipt = build_receipt(record, leaves, checkpoint, public_pem(signer.public))
    except ValueError as exc:
        raise AuditError(f"audit chain {record['chain']}: {exc}") from None
    reason = check_receipt(receipt_text(receipt), signer.public)
    if reason is not None:
        raise AuditError(f"the receipt of seq {record['seq']} does not verify: {reason}")
    return receipt
