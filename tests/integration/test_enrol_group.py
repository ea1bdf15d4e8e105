"""One transaction for a group of ingest requests, on a real SQLite ledger and audit file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, select

from retention.core.record_input import NewRecord
from retention.ledger.models import RECORDS
from retention.services.recording import enrol_group
from tests.integration.conftest import Env


def records(*ids: str) -> list[NewRecord]:
    """New records of these IDs, naming no provider."""
    return [NewRecord(response_id=rid) for rid in ids]


def in_ledger(env: Env) -> int:
    """How many records the ledger tracks."""
    with env.ledger.read() as conn:
        return int(conn.execute(select(func.count()).select_from(RECORDS)).scalar_one())


def recorded_in_file(path: Path) -> list[str]:
    """The response IDs of the file's `response.recorded` lines, in order."""
    lines = [json.loads(raw) for raw in path.read_text().splitlines()]
    return [line["response_id"] for line in lines if line["event"] == "response.recorded"]


def test_published_later_the_lines_follow_the_commit(make_env: Callable[..., Env]) -> None:
    """With `publish_later`, the group's lines reach the audit file from the publisher thread,
    in order, and each batch is counted on its own (an ID a batch repeats is its duplicate)."""
    env = make_env(extra="audit:\n  file: audit.jsonl\n")
    results = enrol_group(
        env.ledger,
        env.settings,
        env.policies,
        [records("a1", "a2"), records("a2", "a3")],
        publish_later=True,
    )
    assert [(r.accepted, r.duplicates) for r in results] == [(2, 0), (1, 1)]
    env.ledger.published()
    assert recorded_in_file(env.path / "audit.jsonl") == ["a1", "a2", "a3"]


def test_a_check_that_refuses_leaves_nothing_written(make_env: Callable[..., Env]) -> None:
    """`check` runs first in the transaction: when it raises, no record and no event of the
    group is written."""
    env = make_env(extra="audit:\n  file: audit.jsonl\n")
    seen: list[Connection] = []

    def refuse(conn: Connection) -> None:
        seen.append(conn)
        raise LookupError("the ledger moved")

    with pytest.raises(LookupError):
        enrol_group(env.ledger, env.settings, env.policies, [records("b1")], check=refuse)
    assert seen and in_ledger(env) == 0
    audit = env.path / "audit.jsonl"
    assert not audit.exists() or recorded_in_file(audit) == []
