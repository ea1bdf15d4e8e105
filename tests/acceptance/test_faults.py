"""A provider on its worst day, and the safety brake."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import LONG_AGO, STANDIN_ARGS, cli, seed, standin_requests, write_config


def _standin(*knobs: str) -> tuple[subprocess.Popen[str], str]:
    """The stand-in with fault knobs, as its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *STANDIN_ARGS, "--seed", "3", *knobs],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


def _record_expired(workdir: Path, ids: list[str]) -> None:
    """Import IDs created long ago."""
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)
    )
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0


def test_429_storm_5xx_and_dropped_connections(workdir: Path) -> None:
    """400 IDs under 30% 429 (Retry-After 1), 15% 500, 5% drops: all gone within 90 s."""
    proc, url = _standin(
        "--rate-429", "0.3", "--retry-after", "1", "--error-rate", "0.15", "--drop-rate", "0.05"
    )
    try:
        write_config(workdir, url, extra="sweep:\n  max_attempts: 12\n")
        ids = [f"f{i}" for i in range(400)]
        seed(url, [{"id": i} for i in ids])
        _record_expired(workdir, ids)
        started = time.monotonic()
        while time.monotonic() - started < 90:
            cli("sweep", cwd=workdir)
            rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
            if all(r["state"] in ("deleted", "absent") for r in rows):
                break
        states = {r["state"] for r in rows}
        assert time.monotonic() - started < 90, sorted(
            (r["state"], r["attempts"]) for r in rows if r["state"] not in ("deleted", "absent")
        )
        assert states <= {"deleted", "absent"} and "deleted" in states
        retried = [r for r in standin_requests(url) if r["status"] == 429]
        assert retried, "the storm happened"
    finally:
        proc.terminate()
        proc.wait(10)


def test_safety_brake_caps_one_sweep(workdir: Path, standin_process: str) -> None:
    """max_deletes_per_sweep: 50 with 200 due: one sweep sends at most 50 and says so."""
    write_config(workdir, standin_process, extra="sweep:\n  max_deletes_per_sweep: 50\n")
    _record_expired(workdir, [f"b{i}" for i in range(200)])
    result = cli("sweep", cwd=workdir)
    deletes = [r for r in standin_requests(standin_process) if r["method"] == "DELETE"]
    assert len(deletes) <= 50
    assert "safety brake" in result.stderr


def test_api_key_is_in_no_file_and_state_files_are_private(workdir: Path) -> None:
    """After sweeps that fail auth and succeed, the key is in no file the product wrote."""
    key = "sk-very-secret-key-4242"
    proc, url = _standin("--api-key", key)
    try:
        write_config(workdir, url)
        _record_expired(workdir, [f"s{i}" for i in range(20)])
        cli("sweep", cwd=workdir, env={"FW_TEST_KEY": "wrong-" + key})
        assert cli("sweep", cwd=workdir, env={"FW_TEST_KEY": key}).returncode == 0
        cli("audit", "export", "--out", "export.jsonl", cwd=workdir)
    finally:
        proc.terminate()
        proc.wait(10)
    for path in workdir.iterdir():
        if path.is_file() and path.name not in ("retention.yaml", "policies.yaml", "ids.jsonl"):
            assert key.encode() not in path.read_bytes(), path.name
    for name in ("retention.db", "audit-signing.key", "audit.jsonl"):
        assert (workdir / name).stat().st_mode & 0o777 == 0o600, name
