"""Ingest commits concurrent requests together, and loses nothing a 202 promised."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN
from tests.helpers import cli

CLIENTS = 64


def _post_until(daemon: DaemonProcess, stop: threading.Event, size: int) -> list[list[str]]:
    """64 clients post `size` new IDs a request until `stop`; the IDs each 202 answered."""
    promised: list[list[str]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
            sent = 0
            while not stop.is_set():
                ids = [f"resp_c{number}_{sent + i}" for i in range(size)]
                sent += size
                try:
                    answer = http.post(
                        daemon.url("/v1/records"), json={"records": [{"id": i} for i in ids]}
                    )
                except httpx.HTTPError:
                    return  # the daemon is gone: what it did not answer was not promised
                if answer.status_code == 202:
                    with lock:
                        promised.append(ids)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(20)
    return promised


def _recorded(workdir: Path) -> tuple[set[str], set[str]]:
    """IDs in the ledger, and IDs with a `response.recorded` event in the ledger's trail."""
    with sqlite3.connect(workdir / "retention.db") as conn:
        rows = {r for (r,) in conn.execute("SELECT response_id FROM records")}
        events = {
            r
            for (r,) in conn.execute(
                "SELECT response_id FROM audit_events WHERE event = 'response.recorded'"
            )
        }
    return rows, events


def test_sigkill_under_64_clients_loses_no_promised_id(
    start: Callable[..., DaemonProcess], workdir: Path
) -> None:
    """SIGKILL while 64 clients post: every ID that got a 202 is in the ledger with its
    `response.recorded` event, the chain verifies, and requests shared commits."""
    daemon = start()
    stop = threading.Event()
    result: list[list[list[str]]] = []
    poster = threading.Thread(target=lambda: result.append(_post_until(daemon, stop, 1)))
    poster.start()
    time.sleep(2.0)
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(10)
    stop.set()
    poster.join(30)
    promised = {rid for ids in result[0] for rid in ids}
    assert len(promised) > 100, "the clients got too few answers to prove anything"
    rows, events = _recorded(workdir)
    assert promised <= rows and promised <= events, sorted(promised - rows)[:5]
    verify = cli("audit", "verify", "--hash-only", "-o", "json", cwd=workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["sound"] is True
    # after the restart the audit file catches up, and it verifies too
    again = start()
    assert again.request("/readyz")[0] == 200
    assert again.stop() == 0
    with sqlite3.connect(workdir / "retention.db") as conn:
        (transactions,) = conn.execute(
            "SELECT count(DISTINCT ts) FROM audit_events WHERE event = 'response.recorded'"
        ).fetchone()
    assert transactions < len(promised) / 2, "concurrent requests did not share commits"


def test_ingested_ids_are_counted_on_metrics_and_left_out_of_the_log(
    start: Callable[..., DaemonProcess],
) -> None:
    """/metrics counts the IDs ingest recorded and those it had already; without -v the
    daemon logs no `response.recorded` line, however many it records."""
    daemon = start()
    for ids in (["m1", "m2", "m3"], ["m3", "m4"]):
        body = {"records": [{"id": rid} for rid in ids]}
        assert daemon.request("/v1/records", body=body, token=TOKEN)[0] == 202
    _, metrics = daemon.request("/metrics")
    assert 'retention_ingest_ids_total{result="recorded"} 4.0' in metrics
    assert 'retention_ingest_ids_total{result="duplicate"} 1.0' in metrics
    assert daemon.stop() == 0
    assert daemon.events("http.listening") and not daemon.events("response.recorded")
