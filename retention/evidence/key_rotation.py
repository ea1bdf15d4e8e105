"""Rotate the checkpoint signing key with a transition the old key signs.

The new key is staged beside the old one (`KEY.next`, 0600); every chain gets a checkpoint signed
by the old key whose details name the new key (`next_key_fingerprint`, `next_public_key`); then
the staged key replaces the old file. Run again after an interruption, it finishes the same
rotation: chains that already announced the staged key are not announced twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from retention.audit.signatures import public_pem
from retention.config.settings import AuditSettings
from retention.core.vocabulary import MetaKey
from retention.evidence.checkpoints import Publish, chains, last_checkpoint, write_checkpoint
from retention.evidence.signing_key import Signer, generate
from retention.files import fsync_folder
from retention.ledger import queries
from retention.ledger.ledger import Ledger


def rotate(
    ledger: Ledger, path: Path, audit: AuditSettings, *, publish: Publish | None = None
) -> tuple[Signer, Signer, list[str]]:
    """Announce a new key on every chain, then make it the signing key; (old, new, chains)."""
    old = Signer.from_file(path, create=False)
    staged = path.with_name(path.name + ".next")
    new = Signer.from_file(staged, create=False) if staged.exists() else generate(staged)
    _remember_retired(ledger, old)
    announced = []
    for chain in chains(ledger):
        last = last_checkpoint(ledger, chain) or {}
        if last.get("key") == new.fingerprint:
            continue  # an interrupted rotation announced it already
        write_checkpoint(
            ledger, old, audit.checkpoint_interval, chain=chain, next_key=new, publish=publish
        )
        announced.append(chain)
    os.replace(staged, path)
    fsync_folder(path.parent)
    return old, new, announced


def _remember_retired(ledger: Ledger, old: Signer) -> None:
    """Keep the old public key, so that `audit verify` of the ledger can start from the key the
    trail started with."""
    pem = public_pem(old.public)
    with ledger.transaction() as conn:
        keys = json.loads(queries.get_meta(conn, MetaKey.RETIRED_KEYS) or "[]")
        if pem not in keys:
            queries.set_meta(conn, MetaKey.RETIRED_KEYS, json.dumps([*keys, pem]))


def first_key(ledger: Ledger) -> str | None:
    """The public key (PEM) the ledger's trail was first signed with, if a rotation retired it."""
    with ledger.read() as conn:
        keys = json.loads(queries.get_meta(conn, MetaKey.RETIRED_KEYS) or "[]")
    return keys[0] if keys else None
