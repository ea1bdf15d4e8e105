"""What changes while a sweep runs wins over what the sweep planned (review findings)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from retention.config.policyfile import parse_policies
from retention.errors import LedgerError
from retention.services.policy_sync import sync_policies
from retention.sweep.runner import sweep_once
from tests.integration.conftest import Env

HOLD_ALL = "version: 1\ndefault: {ttl: 30d}\nholds:\n  - {name: freeze, match: {}}\n"


def test_hold_applied_mid_sweep_stops_the_remaining_deletes(env: Env) -> None:
    """A legal hold synced while requests wait their turn: none of the waiting ones is sent."""
    env.standin.knobs.update({"latency_ms": 300})
    ids = [f"h{i}" for i in range(40)]
    env.record(*ids)
    held = parse_policies(HOLD_ALL)

    async def scenario() -> None:
        sweep = asyncio.create_task(
            sweep_once(env.ledger, env.settings, env.policies, clock=lambda: datetime.now(UTC))
        )
        await asyncio.sleep(0.1)
        await asyncio.to_thread(sync_policies, env.ledger, held)
        await sweep

    asyncio.run(scenario())
    sent = env.deletes()
    assert len(sent) <= 8, "only the requests already on the wire (max_concurrency 8)"
    with env.ledger.read() as conn:
        states = dict(conn.execute(text("SELECT response_id, state FROM records")).all())
    assert {states[i] for i in ids if i not in sent} == {"held"}
    assert all(states[i] in ("absent", "deleted") for i in sent), "what was sent is recorded"


def test_a_body_error_after_the_status_still_counts(env: Env) -> None:
    """A 200 whose body cannot be decoded is still a deletion, recorded with its event."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the sweep's probe: the API's listing
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(
            200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )

    env.record("g1")
    report = env.sweep(transport=httpx.MockTransport(handler))
    assert report.total("deleted") == 1 and report.exit_code == 0


def test_torn_audit_line_is_cut_and_backfilled(env: Env) -> None:
    """A last line without its newline (a crash mid-write) is replaced by the whole record."""
    from tests.helpers import auditor_verify

    env.record("t1", "t2")
    audit = env.settings.audit.file
    data = audit.read_bytes()
    audit.write_bytes(data[: len(data) - 40])  # tear the last line
    env.record("t3")
    assert auditor_verify(audit) == data.count(b"\n") + 1


def test_percent_in_the_ledger_path(tmp_path: Path, make_env) -> None:  # type: ignore[no-untyped-def]
    """A SQLite path with % and @ in it works, migrations and sweeper lock included."""
    odd = tmp_path / "a%20b@c"
    odd.mkdir()
    url_path = str(odd).replace("%", "%25")  # a URL: a literal % is written %25
    env = make_env(extra=f"database_url: sqlite:///{url_path}/ledger.db\n")
    env.record("p1")
    assert env.sweep().total("absent") == 1
    assert (odd / "ledger.db.lock").exists()


def test_empty_database_url_variable_means_the_configured_one(
    make_env, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """RETENTION_DATABASE_URL set but empty falls back to the file's URL, from its folder."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", "")
    monkeypatch.chdir("/")
    env = make_env()
    assert env.settings.database_url == f"sqlite:///{env.path / 'retention.db'}"


def test_a_failed_claim_does_not_stop_later_sweeps(env: Env) -> None:
    """A provider part that fails ends that sweep only; the caller's stop event stays clear."""
    env.record("s1")
    rename = "ALTER TABLE records RENAME COLUMN {} TO {}"
    with env.ledger.transaction() as conn:  # the claim's query now fails in the database
        conn.execute(text(rename.format("lease_owner", "lease_owner_gone")))
    stop = asyncio.Event()
    with pytest.raises(LedgerError, match="lease_owner"):
        asyncio.run(
            sweep_once(
                env.ledger, env.settings, env.policies, clock=lambda: datetime.now(UTC), stop=stop
            )
        )
    with env.ledger.transaction() as conn:
        conn.execute(text(rename.format("lease_owner_gone", "lease_owner")))
    assert not stop.is_set()
    assert env.sweep().total("absent") == 1
