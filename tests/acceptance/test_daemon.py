"""`retention run` as operators run it: systemd notifications, HTTP surface, signals."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess, NotifySocket
from tests.helpers import LONG_AGO, STANDIN_ARGS, cli, seed, standin_requests, write_config

# discovery off: a first crawl that a loaded machine runs late would enrol what a test seeds
# at the stand-in before its ingest does (seen once: `{"accepted": 0, "duplicates": 3}`)
DAEMON_EXTRA = (
    "sweep:\n  interval: 1s\n  shutdown_grace: 10s\ndiscover:\n  interval: 0s\n"
    "server:\n  listen: 127.0.0.1:0\n"
)
TOKEN = "ingest-token-for-tests"


@pytest.fixture
def daemon(workdir: Path, standin_process: str, notify: NotifySocket) -> Iterator[DaemonProcess]:
    """A running daemon against the stand-in, with an ingest token and a watchdog."""
    write_config(workdir, standin_process, extra=DAEMON_EXTRA)
    proc = DaemonProcess(
        workdir,
        {
            "NOTIFY_SOCKET": str(notify.path),
            "RETENTION_INGEST_TOKEN": TOKEN,
            "WATCHDOG_USEC": "400000",
        },
    )
    yield proc
    if proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait()


def test_ready_healthy_and_watchdog(daemon: DaemonProcess, notify: NotifySocket) -> None:
    """Under NOTIFY_SOCKET the daemon sends READY=1 and WATCHDOG=1; health and readiness 200."""
    assert notify.wait_for("READY=1")
    assert notify.wait_for("WATCHDOG=1")
    assert daemon.request("/healthz")[0] == 200
    assert daemon.request("/readyz")[0] == 200


def test_ingest_auth_validation_and_deletion(daemon: DaemonProcess, standin_process: str) -> None:
    """401 without the token, 400 naming a bad item, 202 then DELETEs within a few sweeps."""
    good = [{"id": f"ing_{i}", "created_at": LONG_AGO} for i in range(3)]
    assert daemon.request("/v1/records", body={"records": good})[0] == 401
    assert daemon.request("/v1/records", body={"records": good}, token="wrong")[0] == 401
    status, text = daemon.request(
        "/v1/records", token=TOKEN, body={"records": [*good, {"id": "../etc"}]}
    )
    assert status == 400 and json.loads(text)["items"][0]["index"] == 3
    seed(standin_process, [{"id": i["id"]} for i in good])
    status, text = daemon.request("/v1/records", body={"records": good}, token=TOKEN)
    assert status == 202 and json.loads(text) == {"accepted": 3, "duplicates": 0}
    deleted: set[str] = set()
    for _ in range(50):
        deleted = {
            r["path"].rsplit("/", 1)[1]
            for r in standin_requests(standin_process)
            if r["method"] == "DELETE" and r["status"] == 200
        }
        if len(deleted) == 3:
            break
        time.sleep(0.2)
    assert deleted == {"ing_0", "ing_1", "ing_2"}
    logged = json.dumps(daemon.lines)
    assert TOKEN not in logged and "test-key" not in logged, "no secret in the logs"


def test_ingest_body_size_limit(daemon: DaemonProcess) -> None:
    """A body past the size limit is refused with 413."""
    big = {"records": [{"id": f"r{i}", "model": "m" * 200} for i in range(6000)]}
    assert daemon.request("/v1/records", body=big, token=TOKEN)[0] == 413


def test_metrics_names(daemon: DaemonProcess) -> None:
    """/metrics carries the documented metric names."""
    status, text = daemon.request("/metrics")
    assert status == 200
    for name in (
        "retention_deletions_total",
        "retention_ledger_records",
        "retention_overdue_records",
        "retention_deletion_lag_seconds",
        "retention_sweep_duration_seconds",
        "retention_provider_requests_total",
    ):
        assert name in text, name


def test_bad_policies_and_sighup_keep_the_daemon(
    daemon: DaemonProcess, workdir: Path, notify: NotifySocket
) -> None:
    """A broken policies file on SIGHUP is refused: the daemon lives and audits policy.rejected."""
    assert notify.wait_for("READY=1")
    (workdir / "policies.yaml").write_text("version: 1\ndefault:\n  ttl: 3 parsecs\n")
    daemon.proc.send_signal(signal.SIGHUP)
    assert notify.wait_for("RELOADING=1")
    rejected: list[dict[str, str]] = []
    for _ in range(100):  # the log line comes first, the audit record once committed
        audit = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]
        rejected = [r for r in audit if r["event"] == "policy.rejected"]
        if rejected:
            break
        time.sleep(0.1)
    assert daemon.request("/healthz")[0] == 200
    assert rejected and "policies.yaml:3" in rejected[0]["error"]


def test_sigterm_drains_and_loses_nothing(workdir: Path, notify: NotifySocket) -> None:
    """SIGTERM mid-sweep: STOPPING=1, exit 0 in the grace period, every answer recorded."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *STANDIN_ARGS, "--latency-ms", "300"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        write_config(workdir, url, extra=DAEMON_EXTRA)
        ids = [f"t{i}" for i in range(200)]
        seed(url, [{"id": i} for i in ids])
        assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
        daemon = DaemonProcess(workdir, {"NOTIFY_SOCKET": str(notify.path)})
        waited_until = time.monotonic() + 30
        while not any(r["method"] == "DELETE" for r in standin_requests(url)):
            assert time.monotonic() < waited_until, "no DELETE reached the stand-in"
            time.sleep(0.05)
        started = time.monotonic()
        assert daemon.stop(timeout=15) == 0
        assert time.monotonic() - started < 10
        assert notify.wait_for("STOPPING=1")
        answered = {
            r["path"].rsplit("/", 1)[1]
            for r in standin_requests(url)
            if r["method"] == "DELETE" and r["status"] == 200
        }
        rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
        deleted = {r["response_id"] for r in rows if r["state"] == "deleted"}
        assert deleted == answered and 0 < len(deleted) < 200
        assert {r["state"] for r in rows} <= {"deleted", "pending"}
        assert cli("sweep", cwd=workdir).returncode == 0, "leases were given back"
        assert {r["state"] for r in json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)} == {
            "deleted"
        }
    finally:
        proc.terminate()
        proc.wait(10)


def test_second_daemon_on_one_sqlite_ledger_is_refused(
    daemon: DaemonProcess, workdir: Path
) -> None:
    """A second sweeper on the same SQLite file exits with a clear error."""
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 1
    assert "another retention process" in result.stderr


def test_demo_runs_offline() -> None:
    """`retention demo` finishes the whole cycle, exit 0, well under a minute."""
    started = time.monotonic()
    result = cli("demo", cwd=Path("/tmp"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signatures sound" in result.stdout
    assert time.monotonic() - started < 60
