"""Signed checkpoints: an `audit.checkpoint` event that signs the chain's head.

The signed message is the canonical JSON of
    {"chain", "covers_seq", "covers_hash", "ts", "prev_signature", "key_fingerprint",
     "interval_s"}
where `covers_seq`/`covers_hash` are the seq and hash of the record just before the checkpoint
(so also the checkpoint's own `seq - 1` and `prev_hash`), and `prev_signature` the previous
checkpoint's signature in the chain ("" for the first): checkpoints form a signed chain of their
own, and a re-used or forged signature does not verify.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.chain import GENESIS, canonical
from retention.audit.signing import Signer
from retention.config.settings import AuditSettings
from retention.core.times import format_time
from retention.ledger import store
from retention.ledger.ledger import Ledger
from retention.ledger.models import AuditChain

SIGNED_FIELDS = (
    "chain",
    "covers_seq",
    "covers_hash",
    "ts",
    "prev_signature",
    "key_fingerprint",
    "interval_s",
)


def signed_message(details: dict[str, Any], *, chain: str, ts: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    body = {
        "chain": chain,
        "ts": ts,
        **{k: details.get(k) for k in SIGNED_FIELDS if k not in ("chain", "ts")},
    }
    return canonical(body).encode()


def _head(conn: Connection, chain: str) -> tuple[int, str]:
    """The chain's current head (seq, hash)."""
    row = conn.execute(  # locked: no other writer may append between this read and ours
        select(AuditChain.head_seq, AuditChain.head_hash)
        .where(AuditChain.name == chain)
        .with_for_update()
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def _meta_key(chain: str) -> str:
    """Where the last checkpoint of `chain` is remembered."""
    return f"checkpoint:{chain}"


def last_checkpoint(ledger: Ledger) -> dict[str, Any] | None:
    """The last checkpoint's time and signature for this ledger's chain."""
    with ledger.read() as conn:
        value = store.get_meta(conn, _meta_key(ledger.chain))
    return json.loads(value) if value else None


def is_due(ledger: Ledger, interval: timedelta, now: datetime) -> bool:
    """Whether a checkpoint is due (none yet, or the last is `interval` old)."""
    last = last_checkpoint(ledger)
    if last is None:
        return True
    return now - datetime.fromisoformat(last["ts"].replace("Z", "+00:00")) >= interval


def write_checkpoint(ledger: Ledger, signer: Signer, interval: timedelta) -> dict[str, Any]:
    """Sign the chain's head and append `audit.checkpoint`, in one transaction."""
    with ledger.write() as tx:
        seq, head_hash = _head(tx.conn, ledger.chain)
        previous = store.get_meta(tx.conn, _meta_key(ledger.chain))
        ts = format_time(tx.now)
        assert ts is not None
        details: dict[str, Any] = {
            "covers_seq": seq,
            "covers_hash": head_hash,
            "prev_signature": json.loads(previous)["signature"] if previous else "",
            "key_fingerprint": signer.fingerprint,
            "interval_s": int(interval.total_seconds()),
        }
        details["signature"] = signer.sign(signed_message(details, chain=ledger.chain, ts=ts))
        tx.event("audit.checkpoint", details=details)
        store.set_meta(
            tx.conn,
            _meta_key(ledger.chain),
            json.dumps({"ts": ts, "signature": details["signature"], "seq": seq + 1}),
        )
    return details


def checkpoint_if_due(
    ledger: Ledger, audit: AuditSettings, now: datetime, signer: Signer | None = None
) -> dict[str, Any] | None:
    """Write a checkpoint when the last one is `checkpoint_interval` old (the key is created
    on first use); None when none was due or no key file is configured."""
    if audit.signing_key_file is None or not is_due(ledger, audit.checkpoint_interval, now):
        return None
    signer = signer or Signer.from_file(audit.signing_key_file, create=True)
    return write_checkpoint(ledger, signer, audit.checkpoint_interval)
