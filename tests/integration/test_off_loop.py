"""Ledger calls off the event loop, and the audit file locked only to append: writers in several
processes, an audit file that cannot be opened, and a daemon run in asyncio debug mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from retention.core.times import utcnow
from retention.daemon.service import Daemon
from retention.errors import AuditError
from retention.ledger.audit_file import AuditSink
from retention.ledger.db import open_engine
from retention.ledger.ledger import Ledger
from tests.helpers import LONG_AGO, auditor_verify
from tests.integration.conftest import Env

WRITER = """
import sys
from pathlib import Path
from retention.ledger.audit_file import AuditSink
from retention.ledger.db import open_engine
from retention.ledger.ledger import Ledger

url, audit, count, name = sys.argv[1:]
ledger = Ledger(open_engine(url), AuditSink(Path(audit), log_events=False), chain="main")
for n in range(int(count)):
    with ledger.write() as tx:
        tx.event("test.written", details={"writer": name, "n": n})
"""
FAULTS = ("ledger.blocking_call_on_loop", "sweep.crashed", "discover.crashed")


def write_from_processes(url: str, audit: Path, writers: int, each: int) -> list[str]:
    """Run `writers` processes at once, each committing `each` one-event transactions; their
    output."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(audit), str(each), f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(writers)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * writers, outputs
    return outputs


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_writers_in_several_processes_leave_each_line_once_in_order(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Three processes start one chain at once and commit 150 transactions each on one ledger
    and one audit file, the file's lock taken only to append: none fails on the new chain's
    head, the file holds every record of the ledger once, in chain order, and no writer saw it
    diverge."""
    url = (
        request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path}/l.db"
    )
    audit = tmp_path / "audit.jsonl"
    open_engine(url, auto_upgrade=True).dispose()  # the schema; the chain is started by the race
    outputs = write_from_processes(url, audit, writers=3, each=150)
    assert not any("audit.file_diverged" in output for output in outputs)
    assert auditor_verify(audit) == 450
    seqs = [int(line.split('"seq":')[1].split(",")[0]) for line in audit.read_text().splitlines()]
    assert seqs == list(range(1, 451))


def test_an_audit_file_that_cannot_be_opened_fails_before_anything_is_committed(
    env: Env, tmp_path: Path
) -> None:
    """The audit file is opened before the transaction: when it cannot be, nothing commits."""
    folder = tmp_path / "not-a-file"
    folder.mkdir()
    ledger = Ledger(env.ledger.engine, AuditSink(folder), chain="main")
    with pytest.raises(AuditError, match="cannot open for appending"), ledger.write() as tx:
        tx.event("never.written")
    with env.ledger.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 0


def test_the_daemon_in_asyncio_debug_mode_makes_no_ledger_call_on_its_loop(
    make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In debug mode a ledger call on the loop raises: start-up, sweeps, discovery, signed
    checkpoints, ingest, /metrics, /readyz, a reload and the stop all run without one."""
    env = make_env(
        extra="sweep:\n  interval: 1s\ndiscover:\n  interval: 1s\n"
        "audit:\n  checkpoint_interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"
    )
    monkeypatch.setenv("RETENTION_INGEST_TOKEN", "token-for-this-test")
    now = int(time.time())
    for i in range(3):
        env.standin.store.create({"id": f"listed{i}", "created_at": now - i})
    env.record("due0", "due1")

    async def scenario() -> list[int]:
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        running = asyncio.create_task(daemon.run())
        while not daemon.started:
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{daemon.port}"
        auth = {"Authorization": "Bearer token-for-this-test"}
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as http:
            body = {"records": [{"id": "ingested", "created_at": LONG_AGO}]}
            statuses = [(await http.post("/v1/records", json=body, headers=auth)).status_code]
            daemon.request_reload()
            await asyncio.sleep(2.5)
            for path in ("/metrics", "/readyz", "/healthz"):
                statuses.append((await http.get(path)).status_code)
        daemon.stop()
        assert await running == 0
        return statuses

    with capture_logs() as logs:
        statuses = asyncio.run(scenario(), debug=True)
    assert statuses == [202, 200, 200, 200]
    assert not [entry for entry in logs if entry["event"] in FAULTS]
    with env.ledger.read() as conn:
        events = set(conn.execute(text("SELECT DISTINCT event FROM audit_events")).scalars())
        states = dict(conn.execute(text("SELECT response_id, state FROM records")).all())
    assert {"daemon.started", "sweep.started", "sweep.finished", "audit.checkpoint"} <= events
    assert "daemon.stopped" in events
    if env.standin.flavour.lists_responses:  # discovery found it (OpenAI lists none)
        assert states["listed0"] == "pending"
    assert states["ingested"] in ("deleted", "absent")
    assert {states["due0"], states["due1"]} <= {"deleted", "absent"}
