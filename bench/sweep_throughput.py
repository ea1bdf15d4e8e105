"""Sweep throughput against the provider stand-in, beside the two reference points.

    python bench/sweep_throughput.py [--ids 20000] [--import-ids 200000] [--latency-ms 50]
                                     [--concurrency 128] [--json bench-results.json]

In one run: starts the stand-in with the given latency; imports N expired IDs into a fresh
SQLite ledger (`retention import`, timed); sweeps them (`retention sweep`, timed end to end
with its process start, audit trail on); then measures a sequential loop (one DELETE after
another, as in the provider's documentation) and a bare asyncio client at the same concurrency
(the ceiling). Import speed is also measured on its own, with a larger file (`--import-ids`)
into another fresh ledger, so that the process start weighs less. Prints a table and writes
the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from benchlib import KEY, prepare, report, standin, timed


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements."""
    with standin(args.latency_ms) as base_url:
        with tempfile.TemporaryDirectory(prefix="retention-bench-") as workdir:
            prepare(Path(workdir), base_url, args.ids, args.concurrency)
            import_s, import_rss = timed(Path(workdir), "import", "ids.jsonl")
            sweep_s, sweep_rss = timed(Path(workdir), "sweep")
        with tempfile.TemporaryDirectory(prefix="retention-bench-import-") as workdir:
            prepare(Path(workdir), base_url, args.import_ids, args.concurrency)
            big_s, big_rss = timed(Path(workdir), "import", "ids.jsonl")
        loop = sequential(base_url, args.sequential)
        ceiling = asyncio.run(bare(base_url, args.ids, args.concurrency))
    deletes = args.ids / sweep_s
    return {
        "ids": args.ids,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "import_ids_per_s": round(args.import_ids / big_s),
        "import_ids": args.import_ids,
        "import_s": round(big_s, 2),
        "peak_rss_mb_import": big_rss,
        "import_ids_per_s_small_file": round(args.ids / import_s),
        "sweep_s": round(sweep_s, 2),
        "deletes_per_s": round(deletes),
        "sequential_per_s": round(loop, 1),
        "bare_client_per_s": round(ceiling),
        "ratio_to_ceiling": round(deletes / ceiling, 3),
        "ratio_to_sequential": round(deletes / loop, 1),
        "peak_rss_mb_sweep": sweep_rss,
        "peak_rss_mb_import_small_file": import_rss,
    }


def main() -> None:
    """Measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=20_000, help="IDs imported and swept")
    parser.add_argument("--import-ids", type=int, default=200_000, help="IDs in the import run")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--sequential", type=int, default=200, help="DELETEs in the loop")
    parser.add_argument("--json", default="bench-results.json")
    args = parser.parse_args()
    report(run(args), args.json)


if __name__ == "__main__":
    main()
