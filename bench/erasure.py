"""Erasure by data subject: how long a person's request takes, and what finding them costs.

    python bench/erasure.py [--subject-ids 10000] [--rows 1000000] [--json bench-erasure.json]

1. Request to completion: a subject with `--subject-ids` stored responses (beside as many of
   another subject) recorded through `retention import`, against the stand-in answering every
   request after 50 ms; the clock runs from the erasure request to its `erasure.completed`
   (one sweep at `max_concurrency: 64`).
2. Lookup: a ledger of `--rows` records generated straight into SQLite (100 records per subject,
   one subject digest each), then the erasure's own query for one subject (median of 5) and for
   a subject with 10,000 records, with SQLite's query plan: a search of the subject index, never
   a scan of the ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from benchlib import KEY, report, standin, timed

from retention import logs
from retention.config.policyfile import load_policies
from retention.config.settings import load_settings
from retention.core.subjects import PSEUDONYM, subject_digest
from retention.ledger.db import open_engine
from retention.services import erasure
from retention.services.open_ledger import open_ledger
from retention.services.subject_key import subject_key
from retention.sweep.runner import sweep_once


def configure(workdir: Path, base_url: str) -> Path:
    """retention.yaml and policies.yaml for the bench provider."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
    config = workdir / "retention.yaml"
    config.write_text(
        f"providers:\n  bench:\n    kind: openai\n    base_url: {base_url}\n"
        "    api_key_env: BENCH_KEY\n    max_concurrency: 64\n"
        "sweep:\n  batch_size: 2000\n  max_deletes_per_sweep: 100000000\n"
    )
    return config


def request_to_completion(base_url: str, n: int) -> dict[str, Any]:
    """Seconds from the request to `erasure.completed` for a subject with N responses."""
    with tempfile.TemporaryDirectory(prefix="retention-erasure-") as name:
        workdir = Path(name)
        config = configure(workdir, base_url)
        now = int(time.time())
        lines, seeds = [], []
        for i in range(2 * n):
            who = "subject-a" if i % 2 == 0 else "subject-b"
            rid = f"erase_{i}"
            lines.append(
                json.dumps({"id": rid, "created_at": now - 60, "metadata": {"user_id": who}})
            )
            seeds.append({"id": rid, "created_at": now - 60})
        (workdir / "ids.jsonl").write_text("\n".join(lines) + "\n")
        root = base_url.rsplit("/v1", 1)[0]
        httpx.post(f"{root}/_standin/seed", json={"responses": seeds}, timeout=60)
        import_s, _ = timed(workdir, "import", "ids.jsonl")
        os.environ["BENCH_KEY"] = KEY
        settings = load_settings(config)
        policies = load_policies(settings.policies_file)
        ledger = open_ledger(settings, policies=policies)
        try:
            started = time.perf_counter()
            request = erasure.checked_request({"user_id": "subject-a"}, "bench", None, settings)
            summary = erasure.request_erasure(ledger, settings, request)
            requested = time.perf_counter()
            asyncio.run(sweep_once(ledger, settings, policies, clock=lambda: datetime.now(UTC)))
            done = time.perf_counter()
            status = erasure.erasure_status(ledger, summary["erasure_id"])
        finally:
            ledger.close()
    assert status["state"] == "completed", status["counts"]
    return {
        "subject_ids": n,
        "other_subject_ids": n,
        "import_s": round(import_s, 2),
        "request_s": round(requested - started, 3),
        "request_to_completion_s": round(done - started, 2),
        "deleted": status["counts"]["deleted"],
        "deletes_per_s": round(n / (done - requested)),
    }


def generate(db: Path, rows: int, key: bytes) -> None:
    """N records, 100 per subject, with their subject digests, straight into SQLite (after
    the real migrations made the schema); subject `big` has 10,000 more."""
    open_engine(f"sqlite:///{db}").dispose()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = now.isoformat(" ", "microseconds")
    deadline = (now + timedelta(days=30)).isoformat(" ", "microseconds")
    records, subjects = [], []
    for i in range(rows + 10_000):
        who = f"u{i // 100}" if i < rows else "big"
        digest = subject_digest(key, "user_id", who)
        meta = json.dumps({"user_id": PSEUDONYM + digest})
        row = ("bench", f"r{i}", stamp, meta, "pending", "default", deadline, "first_seen")
        records.append((*row, deadline, 0, stamp))
        subjects.append((digest, "bench", f"r{i}"))
        if len(records) == 50_000:
            _flush(conn, records, subjects)
    _flush(conn, records, subjects)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def _flush(conn: sqlite3.Connection, records: list[Any], subjects: list[Any]) -> None:
    """Insert one batch of records and their index rows."""
    conn.executemany(
        "INSERT INTO records (provider, response_id, first_seen_at, meta, state, policy, "
        "deadline, deadline_basis, due_at, attempts, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        records,
    )
    conn.executemany(
        "INSERT INTO record_subjects (subject, provider, response_id) VALUES (?,?,?)", subjects
    )
    conn.commit()
    records.clear()
    subjects.clear()


def lookup(rows: int) -> dict[str, Any]:
    """Generate the ledger, then time the erasure's query for a subject of 100 and of 10,000."""
    with tempfile.TemporaryDirectory(prefix="retention-lookup-") as name:
        db = Path(name) / "retention.db"
        key = subject_key(Path(name) / "erasure.key")
        started = time.perf_counter()
        generate(db, rows, key)
        generate_s = time.perf_counter() - started
        engine = open_engine(f"sqlite:///{db}")
        figures: dict[str, Any] = {"rows": rows, "generate_s": round(generate_s, 1)}
        with engine.connect() as conn:
            for label, who, repeat in (
                ("subject_of_100", f"u{rows // 200}", 5),
                ("subject_of_10000", "big", 3),
            ):
                digest = subject_digest(key, "user_id", who)
                times, found = [], 0
                for _ in range(repeat):
                    begun = time.perf_counter()
                    found = len(erasure._records_of(conn, [digest]))
                    times.append((time.perf_counter() - begun) * 1000)
                figures[f"{label}_found"] = found
                figures[f"{label}_ms_median"] = round(statistics.median(times), 2)
        engine.dispose()
        conn2 = sqlite3.connect(db)
        digest = subject_digest(key, "user_id", f"u{rows // 200}")
        plan = conn2.execute(
            "EXPLAIN QUERY PLAN SELECT records.* FROM records WHERE records.id IN ("
            "SELECT records.id FROM records JOIN record_subjects ON "
            "record_subjects.provider = records.provider AND "
            "record_subjects.response_id = records.response_id "
            "WHERE record_subjects.subject IN (?)) ORDER BY records.id",
            (digest,),
        ).fetchall()
        conn2.close()
        figures["query_plan"] = " | ".join(row[-1] for row in plan)
    return figures


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject-ids", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", default="bench-erasure.json")
    args = parser.parse_args()
    logs.configure(level="warning")
    figures: dict[str, Any] = {}
    with standin(latency_ms=50) as base_url:
        figures.update(request_to_completion(base_url, args.subject_ids))
    figures.update(lookup(args.rows))
    report(figures, args.json)


if __name__ == "__main__":
    main()
