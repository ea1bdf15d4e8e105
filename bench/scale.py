"""Costs that must not grow with the ledger: a due batch, `status`, the idle daemon, and how
closely `rate_limit_per_s` is held.

    python bench/scale.py [--rows 1000000] [--due 0.02] [--sweep-ids 1000000]
                          [--json bench-scale.json]

Generates a ledger of N rows directly in SQLite (a few per cent due, the rest pending in the
future or closed), then measures: selecting a due batch of 2,000 through the sweep's own query
(median of 5), `retention status` end to end, the CPU share of an idle `retention run` over 10 s,
and the DELETE rate of a sweep under `rate_limit_per_s: 200` against the stand-in. Last, the
peak RSS of importing and then sweeping `--sweep-ids` expired IDs against a 50 ms stand-in
(about 12 minutes for 1M; 0 skips it).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from benchlib import env, report, standin, timed, write_ids

from retention.config.policyfile import parse_policies
from retention.ledger import queries
from retention.ledger.db import open_engine

POLICIES = """version: 1
default: {ttl: 30d}
policies:
  - {name: pii, match: {metadata: {data_class: pii}}, ttl: 24h}
"""
TTL = {"default": timedelta(days=30), "pii": timedelta(hours=24)}
HISTORY = timedelta(days=60)  # the ledger's rows were created over this span


def generate(db: Path, rows: int, due_share: float, *, scattered: bool = False) -> None:
    """N records straight into SQLite, after the schema is made by the real migrations.

    As a ledger fills in life: rows in creation order over 60 days, one in five under a 24 h
    `pii` policy and the rest under 30 days; those past their deadline by more than the
    backlog are deleted, the backlog (`due_share` of the rows) is due, the rest wait. With
    `scattered`, due rows are instead spread at random with random deadlines: the worst case
    for reading a due batch, as no two due rows share a page."""
    open_engine(f"sqlite:///{db}").dispose()
    now = datetime.now(UTC).replace(tzinfo=None)
    backlog = HISTORY * due_share
    rng = random.Random(7)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")  # the counting trigger's journals, as the ledger
    batch = []
    for i in range(rows):
        policy = "pii" if i % 5 == 0 else "default"
        created = now - HISTORY + HISTORY * (i / rows)
        deadline = created + TTL[policy]
        state = "deleted" if deadline <= now - backlog else "pending"
        if scattered:
            roll = rng.random()
            state = "pending" if roll < 0.5 else "deleted"
            deadline = now + timedelta(hours=1 + rng.random() * 700)
            if roll < due_share:
                deadline = now - timedelta(hours=1 + rng.random() * 100)
            elif state == "deleted":
                deadline = now - timedelta(days=rng.random() * 30)
        stamp, due = deadline.isoformat(" ", "microseconds"), None
        if state == "pending":
            due = stamp
        meta = '{"data_class":"pii"}' if policy == "pii" else "{}"
        born = created.isoformat(" ", "microseconds")
        batch.append(
            ("bench", f"r{i}", born, born, meta, state, policy, stamp, "created_at", due, 0, born)
        )
        if len(batch) == 50_000:
            _flush(conn, batch)
    _flush(conn, batch)
    # the generated deadlines stand for the policies in force: no recompute at start-up
    digest = parse_policies(POLICIES).digest()
    conn.execute("INSERT INTO meta (key, value) VALUES ('policy_digest', ?)", (digest,))
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def _flush(conn: sqlite3.Connection, batch: list[tuple[Any, ...]]) -> None:
    """Insert one batch."""
    conn.executemany(
        "INSERT INTO records (provider, response_id, created_at, first_seen_at, meta, state, "
        "policy, deadline, deadline_basis, due_at, attempts, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    conn.commit()  # one transaction per batch keeps the write-ahead log small
    batch.clear()


def due_batch_ms(db: Path, batches: int = 5) -> list[float]:
    """Milliseconds to select each of `batches` successive due batches of 2,000 with the
    sweep's query; between two, the batch is closed as a sweep closes it (not timed), so each
    query reads rows not read before."""
    engine = open_engine(f"sqlite:///{db}")
    times = []
    with engine.connect() as conn:
        for _ in range(batches):
            now = datetime.now(UTC)
            started = time.perf_counter()
            rows = conn.execute(queries.due_batch_query(now, "bench", 2000)).all()
            if len(rows) < 2000:
                break  # a small ledger ran out of due rows
            times.append(round((time.perf_counter() - started) * 1000, 1))
            closed = [
                {"rid": row.id, "state": "deleted", "closed_at": now, "attempts": 1}
                | {"last_status": 200, "last_error": None, "updated_at": now}
                for row in rows
            ]
            queries.close_records(conn, closed)
            conn.commit()
    engine.dispose()
    return times


def postpone_due(db: Path) -> None:
    """Move every due record a day ahead, so the daemon measured next is truly idle."""
    conn = sqlite3.connect(db)
    later = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
    conn.execute(
        "UPDATE records SET due_at = ? WHERE due_at <= ?",
        (later.strftime("%Y-%m-%d %H:%M:%S.%f"), later.strftime("%Y-%m-%d %H:%M:%S.%f")),
    )
    conn.commit()
    conn.close()


def config(workdir: Path, base_url: str, extra: str = "") -> None:
    """retention.yaml and policies.yaml."""
    (workdir / "policies.yaml").write_text(POLICIES)
    (workdir / "retention.yaml").write_text(
        f"providers:\n  bench:\n    kind: openai\n    base_url: {base_url}\n"
        f"    api_key_env: BENCH_KEY\n{extra}"
        "server:\n  listen: 127.0.0.1:0\ndiscover:\n  interval: 0\n"
    )


def status_s(workdir: Path) -> float:
    """Seconds for `retention status`, process start included."""
    return timed(workdir, "status")[0]


def idle_cpu_percent(workdir: Path, seconds: float = 10) -> float:
    """CPU of an idle daemon as a percentage of one core, after it settled."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", "run"],
        cwd=workdir,
        env=env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(5)
    ticks = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks(proc.pid)
    time.sleep(seconds)
    used = (_cpu_ticks(proc.pid) - before) / ticks
    proc.terminate()
    proc.wait(30)
    return 100 * used / seconds


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rate_held(base_url: str, rate: int = 200, n: int = 2000) -> float:
    """The DELETE rate the stand-in saw, first to last, from a sweep under
    `rate_limit_per_s: rate`."""
    with tempfile.TemporaryDirectory(prefix="retention-rate-") as name:
        workdir = Path(name)
        config(workdir, base_url, f"    rate_limit_per_s: {rate}\n    max_concurrency: 64\n")
        write_ids(workdir / "ids.jsonl", n, prefix="rate")
        timed(workdir, "import", "ids.jsonl")
        timed(workdir, "sweep")
    root = base_url.rsplit("/v1", 1)[0]
    seen = httpx.get(f"{root}/_standin/requests", timeout=30).json()["requests"]
    times = sorted(r["at"] for r in seen if r["method"] == "DELETE" and "/rate_" in r["path"])
    assert len(times) == n, len(times)
    return (n - 1) / (times[-1] - times[0])


def sweep_rss(base_url: str, n: int) -> dict[str, Any]:
    """Import N expired IDs and sweep them all at `max_concurrency: 128`: peak RSS of each."""
    with tempfile.TemporaryDirectory(prefix="retention-sweep-") as name:
        workdir = Path(name)
        config(
            workdir,
            base_url,
            "    max_concurrency: 128\nsweep:\n  batch_size: 2000\n"
            "  max_deletes_per_sweep: 100000000\n",
        )
        write_ids(workdir / "ids.jsonl", n)
        import_s, import_rss = timed(workdir, "import", "ids.jsonl")
        sweep_s, rss = timed(workdir, "sweep")
    return {
        "sweep_ids": n,
        "sweep_peak_rss_mb": rss,
        "sweep_deletes_per_s": round(n / sweep_s),
        "sweep_import_ids_per_s": round(n / import_s),
        "sweep_import_peak_rss_mb": import_rss,
    }


def ledger_figures(workdir: Path, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the ledger in `workdir`; time due batches and `status`, then the idle daemon."""
    config(workdir, base_url)
    started = time.perf_counter()
    generate(workdir / "retention.db", args.rows, args.due, scattered=args.scattered)
    figures = {
        "rows": args.rows,
        "generate_s": round(time.perf_counter() - started, 1),
        "layout": "scattered" if args.scattered else "creation order",
        "due_batch_2000_ms": (batches := due_batch_ms(workdir / "retention.db")),
        "due_batch_2000_ms_median": statistics.median(batches),
        "status_s": round(status_s(workdir), 2),
    }
    postpone_due(workdir / "retention.db")
    figures["idle_daemon_cpu_percent"] = round(idle_cpu_percent(workdir), 2)
    return figures


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--due", type=float, default=0.02)
    parser.add_argument(
        "--scattered", action="store_true", help="due rows spread at random (the worst case)"
    )
    parser.add_argument("--sweep-ids", type=int, default=1_000_000, help="0 skips the RSS sweep")
    parser.add_argument("--json", default="bench-scale.json")
    args = parser.parse_args()
    with standin() as base_url:
        with tempfile.TemporaryDirectory(prefix="retention-scale-") as name:
            figures = ledger_figures(Path(name), base_url, args)
        achieved = rate_held(base_url)
        figures.update(
            rate_limit_per_s=200,
            rate_achieved_per_s=round(achieved, 1),
            rate_error_percent=round(100 * (achieved - 200) / 200, 1),
        )
    if args.sweep_ids:
        with standin(latency_ms=50) as slow_url:
            figures.update(sweep_rss(slow_url, args.sweep_ids))
    report(figures, args.json)


if __name__ == "__main__":
    main()
