"""Sweep throughput against the provider stand-in, beside the two reference points.

    python bench/sweep_throughput.py [--ids 20000] [--latency-ms 50] [--concurrency 128]
                                     [--json bench-results.json]

In one run: starts the stand-in with the given latency; imports N expired IDs into a fresh
SQLite ledger (`retention import`, timed); sweeps them (`retention sweep`, timed end to end
with its process start, audit trail on); then measures a sequential loop (one DELETE after
another, as in the provider's documentation) and a bare asyncio client at the same concurrency
(the ceiling). Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

KEY = "bench-key"


def start_standin(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    """The stand-in as its own process; its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retention.standin",
            "--api-key",
            KEY,
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def timed(args: list[str], cwd: Path) -> tuple[float, int]:
    """Run `retention ARGS`; (seconds, peak RSS in MB)."""
    env = {**os.environ, "BENCH_KEY": KEY, "RETENTION_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"retention {' '.join(args)} failed: {proc.stderr.read()}")  # type: ignore[union-attr]
    return elapsed, usage.ru_maxrss // 1024


def sequential(base_url: str, n: int) -> float:
    """DELETEs a second, one after the other."""
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        started = time.perf_counter()
        for i in range(n):
            client.delete(f"{base_url}/responses/seq{i}")
        return n / (time.perf_counter() - started)


async def bare(base_url: str, n: int, concurrency: int) -> float:
    """DELETEs a second from a bare aiohttp client with `concurrency` in flight."""
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Bearer {KEY}"}
    ) as session:

        async def one(i: int) -> None:
            async with semaphore, session.delete(f"{base_url}/responses/bare{i}") as answer:
                await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - started)


def prepare(workdir: Path, base_url: str, n: int, concurrency: int) -> None:
    """Config, policies, and N expired IDs as JSONL."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
    (workdir / "retention.yaml").write_text(
        f"providers:\n  bench:\n    kind: openai\n    base_url: {base_url}\n"
        f"    api_key_env: BENCH_KEY\n    max_concurrency: {concurrency}\n"
        "sweep:\n  batch_size: 2000\n  max_deletes_per_sweep: 100000000\n"
    )
    with open(workdir / "ids.jsonl", "w") as handle:
        for i in range(n):
            handle.write(f'{{"id": "bench_{i}", "created_at": 1700000000}}\n')


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements."""
    proc, base_url = start_standin(args.latency_ms)
    try:
        workdir = Path(tempfile.mkdtemp(prefix="retention-bench-"))
        os.environ["RETENTION_CONFIG"] = str(workdir / "retention.yaml")
        prepare(workdir, base_url, args.ids, args.concurrency)
        import_s, import_rss = timed(["import", "ids.jsonl"], workdir)
        sweep_s, sweep_rss = timed(["sweep"], workdir)
        loop = sequential(base_url, args.sequential)
        ceiling = asyncio.run(bare(base_url, args.ids, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(10)
    deletes = args.ids / sweep_s
    return {
        "ids": args.ids,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "import_ids_per_s": round(args.ids / import_s),
        "import_s": round(import_s, 2),
        "sweep_s": round(sweep_s, 2),
        "deletes_per_s": round(deletes),
        "sequential_per_s": round(loop, 1),
        "bare_client_per_s": round(ceiling),
        "ratio_to_ceiling": round(deletes / ceiling, 3),
        "ratio_to_sequential": round(deletes / loop, 1),
        "peak_rss_mb_sweep": sweep_rss,
        "peak_rss_mb_import": import_rss,
    }


def main() -> None:
    """Measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--sequential", type=int, default=200, help="DELETEs in the loop")
    parser.add_argument("--json", default="bench-results.json")
    args = parser.parse_args()
    figures = run(args)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
