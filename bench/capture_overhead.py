"""What `retention.capture.instrument` costs an app: the same calls with and without it.

    python bench/capture_overhead.py [--calls 500]

Runs the provider stand-in on loopback (no latency), makes the calls with the real openai SDK,
and prints the mean and p99 latency per call for a plain client and an instrumented one whose
daemon is not running (the worst case: every ID goes to the spool file).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from openai import OpenAI

import retention.capture
from retention.standin import StandIn


def measure(client: OpenAI, calls: int) -> list[float]:
    """Seconds per call."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        client.responses.create(model="m", input="hi")
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    """Run both, print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    standin = StandIn(api_key="k").start()
    plain = OpenAI(base_url=standin.base_url, api_key="k")
    spool = Path(tempfile.mkdtemp()) / "spool.jsonl"
    captured = retention.capture.instrument(
        OpenAI(base_url=standin.base_url, api_key="k"),
        ingest_url="http://127.0.0.1:9",
        token="t",
        provider="fireworks",
        spool_path=spool,
    )
    measure(plain, 50)
    measure(captured, 50)  # warm both up
    rows = []
    for name, client in (("plain", plain), ("instrumented", captured)):
        times = measure(client, args.calls)
        rows.append(
            (name, statistics.mean(times) * 1e3, statistics.quantiles(times, n=100)[98] * 1e3)
        )
    print(f"{'client':<14}{'mean ms':>10}{'p99 ms':>10}")
    for name, mean, p99 in rows:
        print(f"{name:<14}{mean:>10.3f}{p99:>10.3f}")
    print(
        f"overhead per call: {rows[1][1] - rows[0][1]:+.3f} ms mean, "
        f"{rows[1][2] - rows[0][2]:+.3f} ms p99 ({args.calls} calls each)"
    )
    standin.stop()


if __name__ == "__main__":
    main()
