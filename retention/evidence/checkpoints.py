"""Signed checkpoints: an `audit.checkpoint` event that signs the chain's head and Merkle root.

Each checkpoint's `details` carry `covers_seq`/`covers_hash` (the record just before it),
`root_hash` (RFC 9162 root of records 1..covers_seq, from the frontier kept with the head),
`prev_signature` (the previous checkpoint's, "" for the first), `key_fingerprint`, `interval_s`
and `signature` over `checkpoint_message.signed_message`. A key rotation adds
`next_key_fingerprint` and `next_public_key`, signed by the old key.

Before signing, the writer checks that the chain still extends what its last checkpoint signed
(the records after it, folded onto the frontier kept at that checkpoint, must give the head's
frontier): an ordinary sweep never signs a history someone rewrote underneath it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.checkpoint_message import signed_message
from retention.audit.merkle import Frontier, leaf_hash
from retention.audit.signatures import public_pem
from retention.audit.verifier import as_dict
from retention.config.settings import AuditSettings
from retention.core.vocabulary import Event, MetaKey, meta_key
from retention.errors import AuditError
from retention.evidence.signing_key import Signer
from retention.ledger import audit_writer, queries
from retention.ledger.ledger import Ledger
from retention.ledger.models import AuditChain, AuditEvent

Publish = Callable[[dict[str, Any]], None]


def last_checkpoint(ledger: Ledger, chain: str | None = None) -> dict[str, Any] | None:
    """The last checkpoint's time, seq, signature and frontier for a chain of this ledger."""
    with ledger.read() as conn:
        value = queries.get_meta(conn, meta_key(MetaKey.CHECKPOINT, chain or ledger.chain))
    return json.loads(value) if value else None


def is_due(ledger: Ledger, interval: timedelta, now: datetime) -> bool:
    """Whether a checkpoint is due (none yet, or the last is `interval` old)."""
    last = last_checkpoint(ledger)
    if last is None:
        return True
    return now - datetime.fromisoformat(last["ts"].replace("Z", "+00:00")) >= interval


def write_checkpoint(
    ledger: Ledger,
    signer: Signer,
    interval: timedelta,
    *,
    chain: str | None = None,
    next_key: Signer | None = None,
    publish: Publish | None = None,
) -> dict[str, Any]:
    """Sign the chain's head and root and append `audit.checkpoint`, in one transaction; then
    hand the checkpoint record to `publish` (the witnesses). Returns the record."""
    name = chain or ledger.chain
    with ledger.write(chain=name) as tx:
        head = audit_writer.lock_head(tx.conn, name)
        previous = queries.get_meta(tx.conn, meta_key(MetaKey.CHECKPOINT, name))
        last = json.loads(previous) if previous else None
        if last is not None:
            _check_key(name, last, signer)
            _check_extends(tx.conn, name, last, head)
        details = _details(head, last, signer, interval, next_key)
        details["signature"] = signer.sign(signed_message(details, chain=name, ts=tx.ts))
        tx.event(Event.AUDIT_CHECKPOINT, details=details)
        tx.flush()
        assert tx.sealed is not None
        record = tx.sealed.records[-1]
        queries.set_meta(
            tx.conn,
            meta_key(MetaKey.CHECKPOINT, name),
            json.dumps(
                {
                    "ts": tx.ts,
                    "signature": details["signature"],
                    "seq": record["seq"],
                    "hash": record["hash"],
                    "covers_seq": head.seq,
                    "frontier": head.frontier.to_hex(),
                    "key": (next_key or signer).fingerprint,
                }
            ),
        )
        if next_key is not None:  # kept apart too: exports hand them to auditors
            queries.set_meta(
                tx.conn, MetaKey.KEY_TRANSITIONS, json.dumps([*transitions(tx.conn), record])
            )
    if publish is not None:
        publish(record)
    return record


def _details(
    head: audit_writer.Head,
    last: dict[str, Any] | None,
    signer: Signer,
    interval: timedelta,
    next_key: Signer | None,
) -> dict[str, Any]:
    """The checkpoint's details, before the signature."""
    details: dict[str, Any] = {
        "covers_seq": head.seq,
        "covers_hash": head.hash,
        "root_hash": head.frontier.root().hex(),
        "prev_signature": last["signature"] if last else "",
        "key_fingerprint": signer.fingerprint,
        "interval_s": int(interval.total_seconds()),
    }
    if next_key is not None:
        details["next_key_fingerprint"] = next_key.fingerprint
        details["next_public_key"] = public_pem(next_key.public)
    return details


def _check_key(chain: str, last: dict[str, Any], signer: Signer) -> None:
    """Sign only with the key the chain expects: its previous one, or the one a rotation named."""
    expected = last.get("key")
    if expected is not None and expected != signer.fingerprint:
        raise AuditError(
            f"audit chain {chain}: its next checkpoint must be signed by {expected}, but the "
            f"signing key is {signer.fingerprint}; keys change only by `retention audit "
            "rotate-key`"
        )


def _check_extends(
    conn: Connection, chain: str, last: dict[str, Any], head: audit_writer.Head
) -> None:
    """Refuse to sign unless the chain still holds the last checkpoint, unchanged, and the
    records after it lead to the head's frontier."""
    line = conn.execute(
        select(AuditEvent.line).where(AuditEvent.chain == chain, AuditEvent.seq == last["seq"])
    ).scalar()
    record = json.loads(line) if line else {}
    details = as_dict(record.get("details"))
    if (
        record.get("event") != Event.AUDIT_CHECKPOINT
        or details.get("signature") != last["signature"]
    ):
        raise AuditError(
            f"audit chain {chain}: the checkpoint at seq {last['seq']} is gone or changed; "
            "refusing to sign a rewritten history"
        )
    if "frontier" not in last:
        return  # remembered before Merkle roots: nothing to extend from
    frontier = Frontier.from_hex(last["covers_seq"], last["frontier"])
    if frontier.root().hex() != details.get("root_hash", frontier.root().hex()):
        raise AuditError(f"audit chain {chain}: the remembered frontier is not the signed root")
    hashes = conn.execute(
        select(AuditEvent.hash)
        .where(AuditEvent.chain == chain, AuditEvent.seq > last["covers_seq"])
        .where(AuditEvent.seq <= head.seq)
        .order_by(AuditEvent.seq)
    ).scalars()
    frontier.extend(leaf_hash(h) for h in hashes)
    if frontier.size != head.seq or frontier.root() != head.frontier.root():
        raise AuditError(
            f"audit chain {chain}: the records do not extend the checkpoint at seq "
            f"{last['seq']}; refusing to sign a rewritten history"
        )


def remembered(ledger: Ledger) -> list[dict[str, Any]]:
    """The last checkpoint of each chain as the ledger remembers it apart from the trail
    (chain, seq, hash), for `audit verify` to find unchanged in the trail."""
    return [
        {"chain": chain, "seq": last["seq"], "hash": last["hash"]}
        for chain, (_, last) in _heads_and_last_checkpoints(ledger).items()
        if last and "hash" in last
    ]


def _heads_and_last_checkpoints(ledger: Ledger) -> dict[str, tuple[int, dict[str, Any] | None]]:
    """Per chain, its head seq and its last checkpoint as remembered, in one read."""
    with ledger.read() as conn:
        heads = conn.execute(select(AuditChain.name, AuditChain.head_seq)).all()
        kept = {
            name: queries.get_meta(conn, meta_key(MetaKey.CHECKPOINT, name)) for name, _ in heads
        }
    return {name: (seq, json.loads(text) if (text := kept[name]) else None) for name, seq in heads}


def transitions(conn: Connection) -> list[dict[str, Any]]:
    """Every key hand-over checkpoint written in the ledger, of any chain (a handful)."""
    return list(json.loads(queries.get_meta(conn, MetaKey.KEY_TRANSITIONS) or "[]"))


def chains(ledger: Ledger) -> list[str]:
    """Every chain in the ledger."""
    with ledger.read() as conn:
        return list(conn.execute(select(AuditChain.name).order_by(AuditChain.name)).scalars())


def uncovered_chains(ledger: Ledger) -> list[str]:
    """The chains whose last record is not a checkpoint."""
    return sorted(
        chain
        for chain, (seq, last) in _heads_and_last_checkpoints(ledger).items()
        if last is None or last.get("seq") != seq
    )


def checkpoint_if_due(
    ledger: Ledger,
    audit: AuditSettings,
    now: datetime,
    signer: Signer | None = None,
    publish: Publish | None = None,
) -> dict[str, Any] | None:
    """Write a checkpoint when the last one is `checkpoint_interval` old (the key is created
    on first use); None when none was due or no key file is configured."""
    if audit.signing_key_file is None or not is_due(ledger, audit.checkpoint_interval, now):
        return None
    signer = signer or Signer.from_file(audit.signing_key_file, create=True)
    return write_checkpoint(ledger, signer, audit.checkpoint_interval, publish=publish)
