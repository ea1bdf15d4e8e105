"""The daemon's event loop never blocks: a long CLI import beside it on one SQLite ledger leaves
/healthz and the systemd watchdog on time (`bench/import_beside_daemon.py` does 1,000,000)."""

from __future__ import annotations

import itertools
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import auditor_verify, cli, write_config

IDS = 80_000  # about 7 s of SQLite's write lock held by the import on this machine
PERIOD = 1.0  # WATCHDOG=1 every half of $WATCHDOG_USEC (2 s): systemd acts after 2 s without one
EXTRA = (
    "sweep:\n  interval: 1s\ndiscover:\n  interval: 1s\naudit:\n  checkpoint_interval: 1s\n"
    "server:\n  listen: 127.0.0.1:0\n"
)


class Pings:
    """$NOTIFY_SOCKET: when each WATCHDOG=1 arrived, and whether READY=1 did."""

    def __init__(self, path: Path) -> None:
        self.path, self.times, self.ready = path, [], threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        """Note each datagram until the socket closes."""
        while True:
            try:
                fields = self.sock.recv(4096).decode().split("\n")
            except OSError:
                return
            if "WATCHDOG=1" in fields:
                self.times.append(time.monotonic())
            if "READY=1" in fields:
                self.ready.set()

    def max_gap(self, start: float, end: float) -> float:
        """The longest time between `start` and `end` without a ping."""
        times = [start, *(t for t in self.times if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(times))


def poll(url: str, samples: list[tuple[float, float, int | None]], stop: threading.Event) -> None:
    """GET `url` every 50 ms until `stop`: (sent at, seconds, status) of each."""
    while not stop.is_set():
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                status: int | None = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        samples.append((sent, time.monotonic() - sent, status))
        stop.wait(0.05)


def test_an_import_beside_the_daemon_leaves_healthz_and_the_watchdog_on_time(
    workdir: Path, standin_process: str
) -> None:
    """While `import` holds SQLite's write lock for seconds, the daemon's sweeps, discovery and
    checkpoints wait in worker threads: /healthz answers within 1 s, WATCHDOG=1 keeps its
    period, no ledger call is made on the loop, and the audit file holds every record once."""
    write_config(workdir, standin_process, extra=EXTRA)
    (workdir / "ids.jsonl").write_text("".join(f'{{"id": "resp_{i:024x}"}}\n' for i in range(IDS)))
    pings = Pings(workdir / "notify.sock")
    daemon = DaemonProcess(
        workdir, {"NOTIFY_SOCKET": str(pings.path), "WATCHDOG_USEC": str(int(PERIOD * 2e6))}
    )
    samples: list[tuple[float, float, int | None]] = []
    stop = threading.Event()
    try:
        assert pings.ready.wait(20)
        poller = threading.Thread(target=poll, args=(daemon.url("/healthz"), samples, stop))
        poller.start()
        time.sleep(1)
        start = time.monotonic()
        imported = cli("import", "ids.jsonl", cwd=workdir, env={"RETENTION_LOG_LEVEL": "warning"})
        end = time.monotonic()
        stop.set()
        poller.join()
        assert imported.returncode == 0, imported.stderr
    finally:
        stop.set()
        daemon.stop()
        pings.sock.close()
    during = [s for s in samples if start <= s[0] <= end]
    assert end - start > 1  # the import held the lock long enough to tell
    assert max(s[1] for s in during) < 1.0 and {s[2] for s in during} == {200}
    assert len(during) > (end - start) / PERIOD  # answers kept coming all along
    assert pings.max_gap(start, end) < 2 * PERIOD
    assert not daemon.events("ledger.blocking_call_on_loop")
    with sqlite3.connect(workdir / "retention.db") as conn:
        events = conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    assert events > IDS and auditor_verify(workdir / "audit.jsonl") == events
