"""What the benchmark scripts share: the stand-in as a process, and timed `retention` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

KEY = "bench-key"


@contextmanager
def standin(latency_ms: float = 0) -> Iterator[str]:
    """The stand-in as its own process while the block runs; yields its base URL."""
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
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def machine_speed(seconds: float = 0.5) -> int:
    """Thousands of rounds a second of a fixed pure-Python workload (a record parsed, hashed
    and encoded, as ingest does), on one core, measured now: the machine this runs on speeds
    up and slows down by a third over minutes (a shared host), so each figure is printed
    beside this one and runs are comparable when they are."""
    import hashlib

    line = json.dumps({"id": "resp_" + "a" * 40, "metadata": {"user_id": "u123"}, "n": 1})
    rounds = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            record = json.loads(line)
            record["seen"] = rounds
            hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        rounds += 100
    return round(rounds / elapsed / 1000)


def report(figures: dict[str, Any], path: str) -> None:
    """Print the figures as an aligned table and write them to `path` as JSON."""
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {path}")


def env(cwd: Path) -> dict[str, str]:
    """The environment of a command run in `cwd` (its retention.yaml, the stand-in's key)."""
    return {
        **os.environ,
        "BENCH_KEY": KEY,
        "RETENTION_LOG_LEVEL": "warning",
        "RETENTION_CONFIG": str(cwd / "retention.yaml"),
    }


def timed(cwd: Path, *args: str) -> tuple[float, int]:
    """Run `retention ARGS` in `cwd`: (seconds, process start included; peak RSS in MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=env(cwd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"retention {' '.join(args)} failed: {proc.stderr.read()}")  # type: ignore[union-attr]
    return elapsed, usage.ru_maxrss // 1024


def write_ids(path: Path, n: int, prefix: str = "bench") -> None:
    """N expired IDs as JSONL, each created a second after the one before."""
    with open(path, "w") as handle:
        for i in range(n):
            handle.write(f'{{"id": "{prefix}_{i}", "created_at": {1700000000 + i}}}\n')


def prepare(workdir: Path, base_url: str, n: int, concurrency: int = 128) -> None:
    """Config, policies, and N expired IDs as JSONL (distinct creation times, as in life)."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
    (workdir / "retention.yaml").write_text(
        f"providers:\n  bench:\n    kind: openai\n    base_url: {base_url}\n"
        f"    api_key_env: BENCH_KEY\n    max_concurrency: {concurrency}\n"
        "sweep:\n  batch_size: 2000\n  max_deletes_per_sweep: 100000000\n"
    )
    write_ids(workdir / "ids.jsonl", n)
