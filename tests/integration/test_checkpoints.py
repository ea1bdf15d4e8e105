"""Checkpoints on a real ledger: Merkle roots from the frontier kept with the head, a frontier
computed once for ledgers written before it existed, and a refusal to sign rewritten history."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from retention.audit.merkle import root_hex_of
from retention.audit.verifier import Anchors, verify_records
from retention.errors import AuditError
from retention.evidence.checkpoints import write_checkpoint
from retention.evidence.signing_key import Signer
from tests.integration.conftest import Env

SIGNER = Signer(Ed25519PrivateKey.generate())


def _records(env: Env) -> list[dict[str, object]]:
    """The ledger's trail."""
    with env.ledger.read() as conn:
        lines = conn.execute(text("SELECT line FROM audit_events ORDER BY seq")).scalars()
        return [json.loads(line) for line in lines]


def _checkpoint(env: Env) -> dict[str, object]:
    """Write a checkpoint with the test key."""
    return write_checkpoint(env.ledger, SIGNER, env.settings.audit.checkpoint_interval)


def test_root_is_the_merkle_root_of_the_records_it_covers(env: Env) -> None:
    """A checkpoint's root equals the root computed from every record before it."""
    env.record("a", "b", "c")
    record = _checkpoint(env)
    before = _records(env)[:-1]
    assert record["details"]["root_hash"] == root_hex_of(r["hash"] for r in before)  # type: ignore[index]
    assert verify_records(_records(env), Anchors(key=SIGNER.public)).sound


def test_a_ledger_from_before_frontiers_gets_one_computed_once(env: Env) -> None:
    """With the frontier column empty (as after migration 0007), the next append computes it
    from the chain, and roots and verification come out right."""
    env.record("old_1", "old_2")
    _checkpoint(env)
    with env.ledger.transaction() as conn:
        conn.execute(text("UPDATE audit_chains SET head_frontier = NULL"))
    env.record("new_1")
    record = _checkpoint(env)
    before = _records(env)[:-1]
    assert record["details"]["root_hash"] == root_hex_of(r["hash"] for r in before)  # type: ignore[index]
    assert verify_records(_records(env), Anchors(key=SIGNER.public)).sound


def test_a_rewritten_history_is_never_signed(env: Env) -> None:
    """If a record the last checkpoint covered is changed in the ledger, with head and frontier
    recomputed, the next checkpoint is refused."""
    env.record("a", "b")
    _checkpoint(env)
    env.record("c")
    with env.ledger.transaction() as conn:
        conn.execute(text("UPDATE audit_events SET hash = :h WHERE seq = 2"), {"h": "ab" * 32})
        conn.execute(text("UPDATE audit_chains SET head_frontier = NULL"))
    with pytest.raises(AuditError, match="rewritten history"):
        _checkpoint(env)


def test_only_the_key_a_rotation_named_may_sign(env: Env) -> None:
    """After a checkpoint names the next key, a checkpoint signed by any other key is refused."""
    env.record("a")
    following = Signer(Ed25519PrivateKey.generate())
    write_checkpoint(env.ledger, SIGNER, env.settings.audit.checkpoint_interval, next_key=following)
    with pytest.raises(AuditError, match="rotate-key"):
        _checkpoint(env)
    write_checkpoint(env.ledger, following, env.settings.audit.checkpoint_interval)
    assert verify_records(_records(env), Anchors(key=SIGNER.public)).sound
