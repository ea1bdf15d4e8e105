"""A bad policies file is refused once per distinct content, however often it is read again."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from tests.acceptance.daemon_helpers import DaemonProcess, NotifySocket
from tests.helpers import POLICIES, cli, write_config

TOKEN = "ingest-token-for-tests"
EXTRA = "sweep:\n  interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"
BAD = "version: 1\ndefault:\n  ttl: 3 parsecs\n"
OTHER_BAD = "version: 1\ndefault:\n  ttl: 4 fortnights, roughly\n"


def _replace(path: Path, text: str) -> None:
    """Write `path` at once (a sweep reading it mid-write would see a third, distinct file)."""
    staged = path.with_suffix(".staged")
    staged.write_text(text)
    os.replace(staged, path)


def _rejections(workdir: Path) -> list[dict[str, object]]:
    """The `policy.rejected` records of the audit file."""
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "policy.rejected"]


def _wait_for_rejections(workdir: Path, count: int, timeout: float = 10) -> None:
    """Wait until the audit file holds `count` rejections."""
    end = time.monotonic() + timeout
    while len(_rejections(workdir)) < count and time.monotonic() < end:
        time.sleep(0.05)


def test_one_rejection_per_distinct_bad_file(
    workdir: Path, standin_process: str, notify: NotifySocket
) -> None:
    """While the daemon's policies file is bad and the ledger holds newer policies, ingest
    requests, sweeps and a repeated SIGHUP audit one `policy.rejected`; new bad content, one
    more."""
    write_config(workdir, standin_process, extra=EXTRA)
    # another configuration on the same ledger, whose CLI applies different (good) policies
    (workdir / "other-policies.yaml").write_text(POLICIES.replace("ttl: 30d", "ttl: 20d"))
    config = (workdir / "retention.yaml").read_text()
    (workdir / "other.yaml").write_text(config + "policies_file: other-policies.yaml\n")
    daemon = DaemonProcess(
        workdir, {"NOTIFY_SOCKET": str(notify.path), "RETENTION_INGEST_TOKEN": TOKEN}
    )
    try:
        assert notify.wait_for("READY=1")
        _replace(workdir / "policies.yaml", BAD)
        assert cli("-c", "other.yaml", "record", "resp_other", cwd=workdir).returncode == 0
        for i in range(8):
            body = {"records": [{"id": f"resp_ingest{i}"}]}
            status, _ = daemon.request("/v1/records", body=body, token=TOKEN)
            assert status == 202
        time.sleep(2.5)  # two sweeps follow the ledger's policies too
        daemon.proc.send_signal(signal.SIGHUP)
        assert notify.wait_for("RELOADING=1")
        time.sleep(0.5)
        assert len(_rejections(workdir)) == 1
        _replace(workdir / "policies.yaml", OTHER_BAD)
        daemon.proc.send_signal(signal.SIGHUP)
        _wait_for_rejections(workdir, 2)
        time.sleep(1.5)
        rejected = _rejections(workdir)
        assert len(rejected) == 2
        assert "3 parsecs" in str(rejected[0]["error"])
        assert "fortnights" in str(rejected[1]["error"])
    finally:
        assert daemon.stop() == 0
