"""Ingest at fleet rates: IDs a second through `POST /v1/records` with many clients at once.

    python bench/ingest_throughput.py [--clients 64] [--seconds 10] [--sizes 1,10,100]
                                      [--backends sqlite,postgresql] [--json bench-ingest.json]

For each backend and each request size, a fresh ledger and a fresh `retention run` (audit file
on, `synchronous=FULL` on SQLite); `--clients` clients each post requests of `size` new IDs,
one after the other, for `--seconds` seconds after a second of warm-up. Printed per run: IDs a
second that got their 202, requests a second, the latency of a request (p50, p99, max), the
daemon's own CPU (seconds of user+system time per wall second, from /proc) and the clients'
(this process's: on a 2-core machine the two together can use no more than 2), how many
transactions the daemon's group commit made (`retention_ingest_commits_total`), and the
machine's speed just before the run (`machine_kops`, benchlib.machine_speed: a shared host's
speed drifts, and figures compare only at like speeds). Afterwards the
run checks that every ID that got a 202 is in the ledger. PostgreSQL runs on the database
server at `--pg-url` (a fresh database, dropped after); it is skipped when it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import KEY, machine_speed, report, standin

TOKEN = "bench-ingest-token"  # noqa: S105 (the bench daemon's own, made up)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def configure(workdir: Path, base_url: str, database_url: str, port: int) -> None:
    """retention.yaml and policies.yaml: ingest on, sweeps and discovery out of the way."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
    (workdir / "retention.yaml").write_text(
        f"database_url: {database_url}\n"
        f"providers:\n  bench:\n    kind: openai\n    base_url: {base_url}\n"
        "    api_key_env: BENCH_KEY\n"
        "sweep:\n  interval: 1h\ndiscover:\n  interval: 0s\n"
        "audit:\n  file: audit.jsonl\n"
        f"server:\n  listen: 127.0.0.1:{port}\n  ingest_token_env: BENCH_INGEST_TOKEN\n"
    )


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the daemon answers /readyz with 200."""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"the daemon exited at start; its log ends:\n{tail}")
            try:
                async with session.get(url + "/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the daemon did not become ready")


async def commits(url: str) -> int:
    """The daemon's ingest transactions so far, from /metrics (on a connection of its own)."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith("retention_ingest_commits_total "):
                return int(float(line.split()[1]))
    return 0


async def post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, body: bytes
) -> int:
    """One POST /v1/records on a kept-alive connection; the answer's status. A bare HTTP/1.1
    client: the load generator shares the machine with the daemon, and a full client library
    would spend more CPU than the daemon it measures."""
    writer.write(
        b"POST /v1/records HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (port, TOKEN.encode(), len(body), body)
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def load(url: str, clients: int, size: int, seconds: float) -> dict[str, Any]:
    """`clients` clients posting `size` new IDs a request; figures of the measured window."""
    port = int(url.rsplit(":", 1)[1])
    latencies: list[float] = []
    accepted: list[str] = []
    measuring = False
    stop = False
    errors = 0

    async def client(number: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        try:
            while not stop:
                ids = [f"resp_c{number}_{sent + i}" for i in range(size)]
                sent += size
                body = json.dumps({"records": [{"id": rid} for rid in ids]}).encode()
                started = time.perf_counter()
                status = await post(reader, writer, port, body)
                took = time.perf_counter() - started
                if status != 202:
                    errors += 1
                    continue
                accepted.extend(ids)
                if measuring:
                    latencies.append(took)
        finally:
            writer.close()

    tasks = [asyncio.create_task(client(n)) for n in range(clients)]
    await asyncio.sleep(1.0)  # warm-up: connections open, caches warm
    measuring = True
    first_commits = await commits(url)
    before = len(accepted)
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - started
    done = len(accepted) - before
    made = await commits(url) - first_commits
    stop = True
    await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "ids_per_s": round(done / elapsed),
        "requests_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
        "commits_per_s": round(made / elapsed),
        "errors": errors,
        "accepted_ids": accepted,
    }


def ledger_count(database_url: str, workdir: Path) -> int:
    """Records in the ledger after the run."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(workdir / "retention.db") as conn:
            return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg", "postgresql")) as conn:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])  # type: ignore[index]


def one_run(
    base_url: str, database_url: str, clients: int, size: int, seconds: float
) -> dict[str, Any]:
    """A fresh daemon on `database_url`, loaded; its figures."""
    with tempfile.TemporaryDirectory(prefix="retention-ingest-") as name:
        workdir = Path(name)
        port = free_port()
        if database_url.startswith("sqlite"):
            database_url = "sqlite:///retention.db"
        configure(workdir, base_url, database_url, port)
        env = {**os.environ, "BENCH_KEY": KEY, "BENCH_INGEST_TOKEN": TOKEN}
        if not database_url.startswith("sqlite"):  # a server's schema is the operator's step
            subprocess.run(
                [sys.executable, "-m", "retention", "-c", "retention.yaml", "db", "upgrade"],
                cwd=workdir,
                env=env,
                check=True,
                capture_output=True,
            )
        log = open(workdir / "daemon.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "retention", "-c", "retention.yaml", "run"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(wait_ready(url, proc, workdir / "daemon.log"))
            cpu_before, wall_before = cpu_seconds(proc.pid), time.perf_counter()
            own_before = cpu_seconds(os.getpid())
            figures = asyncio.run(load(url, clients, size, seconds))
            wall = time.perf_counter() - wall_before
            cpu = (cpu_seconds(proc.pid) - cpu_before) / wall
            figures["clients_cpu"] = round((cpu_seconds(os.getpid()) - own_before) / wall, 2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()
        ids = figures.pop("accepted_ids")
        in_ledger = ledger_count(database_url, workdir)
        if in_ledger < len(ids):
            raise SystemExit(f"{len(ids)} IDs got a 202 but the ledger holds {in_ledger}")
        return {**figures, "daemon_cpu": round(cpu, 2), "in_ledger": in_ledger}


def fresh_database(pg_url: str) -> str | None:
    """A new empty PostgreSQL database's URL, or None when the server cannot be reached."""
    try:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS retention_bench_ingest")
            conn.execute("CREATE DATABASE retention_bench_ingest")
    except Exception as exc:  # no server, no driver: say so and go on
        print(f"postgresql skipped: {exc}")
        return None
    return pg_url.rsplit("/", 1)[0] + "/retention_bench_ingest"


def main() -> None:
    """Parse the options, run each backend and size, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--json", default="bench-ingest.json")
    args = parser.parse_args()
    figures: dict[str, Any] = {"clients": args.clients, "cpus": os.cpu_count()}
    with standin() as base_url:
        for backend in args.backends.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                if backend == "sqlite":
                    database_url: str | None = "sqlite"
                else:
                    database_url = fresh_database(args.pg_url)
                    if database_url is None:
                        break
                speed = machine_speed()
                run = one_run(base_url, database_url, args.clients, size, args.seconds)
                run["machine_kops"] = speed
                figures[f"{backend} {args.clients}x{size}"] = run
                print(f"{backend} {args.clients} clients x {size} IDs: {run}", flush=True)
    report(figures, args.json)


if __name__ == "__main__":
    main()
