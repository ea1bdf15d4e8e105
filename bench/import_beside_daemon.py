"""The daemon's event loop beside a long CLI import on the same SQLite ledger (issue 13).

    python bench/import_beside_daemon.py [--ids 1000000] [--watchdog-usec 1000000]
                                         [--ingest-every 1.0] [--json bench-import-beside.json]

Starts the stand-in and `retention run` (a sweep every second, discovery and a signed
checkpoint every 2 s, the systemd watchdog asked for through $WATCHDOG_USEC and
$NOTIFY_SOCKET), then runs `retention import` of N fresh IDs on the same ledger. Meanwhile it
asks /healthz every 50 ms and /readyz every 500 ms, posts a few expired IDs to ingest one
request after another, and notes when each WATCHDOG=1 datagram arrives. Prints the slowest
/healthz answer and the longest gap between watchdog pings while the import ran, what the
daemon logged meanwhile, and checks the audit file: each seq of each chain once, in order, and
as many lines as the ledger holds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from benchlib import KEY, report, standin

TOKEN = "bench-ingest-token"  # noqa: S105 - a test token
WATCHED = (  # what the daemon may log while it waits for the import's write lock
    "ledger.blocking_call_on_loop",
    "sweep.crashed",
    "sweep.flush_failed",
    "discover.crashed",
    "audit.checkpoint_failed",
    "audit.file_diverged",
    "audit.file_write_failed",
)


def configure(workdir: Path, base_url: str) -> None:
    """The daemon's config: busy with every job it has, on a fresh SQLite ledger."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
    (workdir / "retention.yaml").write_text(
        f"providers:\n  bench:\n    kind: fireworks\n    base_url: {base_url}\n"
        "    api_key_env: BENCH_KEY\n    account_id: acme\n"
        "sweep: {interval: 1s}\n"
        "discover: {interval: 2s}\n"
        "audit: {checkpoint_interval: 2s}\n"
        "server: {listen: '127.0.0.1:0'}\n"
    )


def write_fresh_ids(path: Path, n: int) -> None:
    """N IDs never seen, `resp_` and 24 hex digits, with no creation time (none is due)."""
    with open(path, "w") as handle:
        for start in range(0, n, 10_000):
            stop = min(n, start + 10_000)
            handle.write("".join(f'{{"id": "resp_{i:024x}"}}\n' for i in range(start, stop)))


def command_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `retention` commands here."""
    return {
        **os.environ,
        "BENCH_KEY": KEY,
        "RETENTION_CONFIG": str(workdir / "retention.yaml"),
        "RETENTION_INGEST_TOKEN": TOKEN,
        **(extra or {}),
    }


class Watchdog:
    """A datagram socket standing in for $NOTIFY_SOCKET: when each WATCHDOG=1 came."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path, self.pings, self.ready = path, [], threading.Event()
        self.running = True
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        """Note each datagram's arrival."""
        while self.running:
            try:
                fields = self.sock.recv(4096).decode().split("\n")
            except TimeoutError:
                continue
            except OSError:
                return
            if "WATCHDOG=1" in fields:
                self.pings.append(time.monotonic())
            if "READY=1" in fields:
                self.ready.set()

    def max_gap(self, start: float, end: float) -> tuple[float, float]:
        """The longest time without a ping between `start` and `end`, and when it ended."""
        times = [start, *(t for t in self.pings if start < t < end), end]
        return max((b - a, b) for a, b in itertools.pairwise(times))

    def close(self) -> None:
        """Stop listening."""
        self.running = False
        self.sock.close()


class Poller:
    """GET a URL every `every` seconds in a thread: (sent at, seconds, status) of each."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every, self.samples = url, every, []
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        """Ask until stopped; a timeout counts as its full wait."""
        with httpx.Client(trust_env=False, timeout=30) as client:
            while self.running:
                sent = time.monotonic()
                try:
                    status: int | None = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = None
                self.samples.append((sent, time.monotonic() - sent, status))
                time.sleep(max(0.0, self.every - (time.monotonic() - sent)))

    def during(self, start: float, end: float) -> list[tuple[float, float, int | None]]:
        """The samples sent between `start` and `end`."""
        return [s for s in self.samples if start <= s[0] <= end]

    def stop(self) -> None:
        """Stop asking."""
        self.running = False
        self.thread.join(35)


class Ingest:
    """An app posting a few expired IDs, one request after another, `every` seconds."""

    def __init__(self, url: str, every: float) -> None:
        self.url, self.every, self.statuses = url, every, Counter()
        self.running = every > 0
        self.thread = threading.Thread(target=self._post, daemon=True)
        if self.running:
            self.thread.start()

    def _post(self) -> None:
        """Post until stopped."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(trust_env=False, timeout=60, headers=headers) as client:
            batch = 0
            while self.running:
                records = [
                    {"id": f"ing_{batch}_{j}", "created_at": "2020-01-01T00:00:00Z"}
                    for j in range(5)
                ]
                try:
                    status: int | str = client.post(self.url, json={"records": records}).status_code
                except httpx.HTTPError:
                    status = "error"
                self.statuses[status] += 1
                batch += 1
                time.sleep(self.every)

    def stop(self) -> None:
        """Stop posting."""
        self.running = False
        if self.thread.is_alive():
            self.thread.join(65)


def wait_port(log: Path, daemon: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """The port from the daemon's `http.listening` line."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text().splitlines():
            if '"http.listening"' in line:
                return int(json.loads(line)["port"])
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise SystemExit("the daemon did not start listening")


def check_trail(workdir: Path) -> dict[str, Any]:
    """Each seq of each chain once and in order in the audit file, as many as the ledger."""
    last: dict[str, int] = {}
    lines = faults = 0
    with open(workdir / "audit.jsonl", "rb") as handle:
        for raw in handle:
            record = json.loads(raw)
            chain, seq = record["chain"], record["seq"]
            if seq != last.get(chain, 0) + 1:
                faults += 1
            last[chain] = seq
            lines += 1
    with sqlite3.connect(workdir / "retention.db") as conn:
        ledger = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    return {"audit_lines": lines, "ledger_events": ledger, "out_of_order_or_repeated": faults}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start everything, import, measure, stop."""
    with standin() as base_url, tempfile.TemporaryDirectory(prefix="retention-beside-") as tmp:
        workdir = Path(tmp)
        configure(workdir, base_url)
        write_fresh_ids(workdir / "ids.jsonl", args.ids)
        watchdog = Watchdog(workdir / "notify.sock")
        log = workdir / "daemon.log"
        with open(log, "wb") as out:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "retention", "run"],
                cwd=workdir,
                env=command_env(
                    workdir,
                    {
                        "NOTIFY_SOCKET": str(watchdog.path),
                        "WATCHDOG_USEC": str(args.watchdog_usec),
                    },
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            port = wait_port(log, daemon)
            if not watchdog.ready.wait(30):
                raise SystemExit("no READY=1 from the daemon")
            base = f"http://127.0.0.1:{port}"
            health, ready = Poller(f"{base}/healthz", 0.05), Poller(f"{base}/readyz", 0.5)
            ingest = Ingest(f"{base}/v1/records", args.ingest_every)
            time.sleep(2)
            logged_before = len(log.read_text().splitlines())
            start = time.monotonic()
            imported = subprocess.run(
                [sys.executable, "-m", "retention", "import", "ids.jsonl", "-o", "json"],
                cwd=workdir,
                env=command_env(workdir, {"RETENTION_LOG_LEVEL": "warning"}),
                capture_output=True,
                text=True,
            )
            end = time.monotonic()
            if imported.returncode != 0:
                raise SystemExit(f"import failed: {imported.stderr[-2000:]}")
            time.sleep(3)
            for worker in (health, ready, ingest):
                worker.stop()
        finally:
            daemon.send_signal(signal.SIGTERM)
            stopped = daemon.wait(120)
            watchdog.close()
        if args.keep_log:
            shutil.copyfile(log, args.keep_log)
        during = health.during(start, end)
        lines = log.read_text().splitlines()[logged_before:]
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        events = Counter(e.get("event") for e in logged)
        period = args.watchdog_usec / 2e6
        gap, gap_end = watchdog.max_gap(start, end)
        slowest = max(during, key=lambda s: s[1])
        return {
            "ids": args.ids,
            "import_s": round(end - start, 1),
            "import_ids_per_s": round(args.ids / (end - start)),
            "healthz_requests_during_import": len(during),
            "healthz_max_s": round(slowest[1], 3),
            "healthz_slowest_sent_at_s": round(slowest[0] - start, 1),
            "healthz_not_200": sum(1 for s in during if s[2] != 200),
            "readyz_max_s": round(max(s[1] for s in ready.during(start, end)), 3),
            "watchdog_period_s": period,
            "watchdog_pings_during_import": sum(1 for t in watchdog.pings if start < t < end),
            "watchdog_max_gap_s": round(gap, 3),
            "watchdog_max_gap_ended_at_s": round(gap_end - start, 1),
            "ingest_answers": dict(ingest.statuses),
            "daemon_logged": {name: events[name] for name in WATCHED if events[name]},
            "sweeps_done": events["sweep.done"],
            "daemon_exit": stopped,
            **check_trail(workdir),
        }


def main() -> None:
    """Parse arguments, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--watchdog-usec", type=int, default=1_000_000)
    parser.add_argument("--ingest-every", type=float, default=1.0, help="0: no ingest")
    parser.add_argument("--json", default="bench-import-beside.json")
    parser.add_argument("--keep-log", help="copy the daemon's log here")
    args = parser.parse_args()
    report(run(args), args.json)


if __name__ == "__main__":
    main()
