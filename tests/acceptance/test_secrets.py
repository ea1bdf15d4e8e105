"""A careless provider echoes our API key back (in `x-request-id`, raw in a 401 body,
JSON-escaped in error bodies and listed metadata), and the key holds `"`, `\\` and `'`: after
record, sweeps, discovery, doctor, the daemon with ingest, export and listing, no form of the
key or the ingest token is in any file, log line, output or database dump."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from retention.redaction import REDACTED, forms_of
from retention.standin.flavours import FLAVOURS
from tests.helpers import (
    FLAVOR,
    LONG_AGO,
    STANDIN_ARGS,
    cli,
    seed,
    standin_root,
    user_env,
    write_config,
)

KEY = f"sk-Hostile\"Key\\With'Quote-{secrets.token_hex(6)}"
TOKEN = f"tok-\"Ingest\\Token'-{secrets.token_hex(6)}"
FORMS = sorted({form for secret in (KEY, TOKEN) for form in forms_of(secret)}, key=len)
ENV = {"FW_TEST_KEY": KEY, "RETENTION_INGEST_TOKEN": TOKEN}
PROVIDER = "    verify_after_delete: true\n"
SWEEP = "sweep:\n  max_attempts: 3\n  interval: 1s\n  shutdown_grace: 5s\n"


class Outputs:
    """Everything the commands printed, kept beside the state so one grep covers both."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        folder.mkdir()

    def run(self, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the CLI with the hostile key and token; keep its stdout and stderr."""
        result = cli(*args, cwd=workdir, env=ENV)
        self.count += 1
        (self.folder / f"{self.count:02d}-{args[0]}.out").write_text(result.stdout)
        (self.folder / f"{self.count:02d}-{args[0]}.err").write_text(result.stderr)
        return result


def _standin() -> tuple[subprocess.Popen[str], str]:
    """The stand-in accepting KEY and echoing it back, as its own process."""
    command = [sys.executable, "-m", "retention.standin", "--api-key", KEY, "--echo-key"]
    proc = subprocess.Popen(
        [*command, *STANDIN_ARGS, "--seed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


def _knobs(url: str, **values: float) -> None:
    """Change the stand-in's faults while it runs."""
    request = urllib.request.Request(
        standin_root(url) + "/_standin/knobs", data=json.dumps(values).encode()
    )
    urllib.request.urlopen(request, timeout=10).read()


def _hostile_cli_session(workdir: Path, url: str, out: Outputs) -> None:
    """Sweeps through 500s and a 401 that quote the key, discovery of listed metadata that
    holds it, doctor, export and listing, each as a user runs them."""
    seed(url, [{"id": f"d{i}"} for i in range(12)] + [{"id": f"listed{i}"} for i in range(3)])
    records = [{"id": i, "created_at": LONG_AGO} for i in [*(f"d{n}" for n in range(12)), "a0"]]
    (workdir / "ids.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert out.run(workdir, "import", "ids.jsonl").returncode == 0
    _knobs(url, error_rate=0.3)
    assert out.run(workdir, "-v", "sweep").returncode in (0, 1)
    _knobs(url, error_rate=0.0, deny_delete_rate=1.0)
    assert out.run(workdir, "record", "e0", "e1", "--created-at", LONG_AGO).returncode == 0
    assert out.run(workdir, "sweep").returncode == 1  # the DELETE's 401 stops the provider
    _knobs(url, deny_delete_rate=0.0)
    listed = FLAVOURS[FLAVOR].lists_responses  # OpenAI lists none: discovery says so, exit 1
    assert out.run(workdir, "discover").returncode == (0 if listed else 1)
    assert out.run(workdir, "doctor", "-o", "json").returncode in (0, 1)
    assert out.run(workdir, "audit", "export", "--out", "export.jsonl").returncode == 0
    assert out.run(workdir, "ls", "-o", "json").returncode == 0
    (workdir / "pub.pem").write_text(out.run(workdir, "audit", "pubkey").stdout)
    verify = out.run(workdir, "audit", "verify", "export.jsonl", "--pubkey", "pub.pem")
    assert verify.returncode == 0, verify.stderr


def _assert_scrubbed_on_the_way_in(workdir: Path) -> None:
    """The echoes did reach us and were redacted at the client: request IDs, 500 and 401
    error text in the trail, listed metadata in the ledger, each holding `[redacted]`, request
    IDs cut to 128."""
    records = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]
    request_ids = [r["provider_request_id"] for r in records if r["provider_request_id"]]
    assert request_ids and all(f"Bearer {REDACTED}" in rid for rid in request_ids)
    assert all(len(rid) <= 128 for rid in request_ids)
    errors = [r["error"] for r in records if r["error"] and "HTTP" in r["error"]]
    assert any(e.startswith("HTTP 500") and REDACTED in e for e in errors), errors
    assert any(e.startswith("HTTP 401") and REDACTED in e for e in errors), errors
    rows = json.loads(next((workdir / "outputs").glob("*-ls.out")).read_text())
    listed = [r["metadata"] for r in rows if r["response_id"].startswith("listed")]
    assert all(m == {"echo": f"Bearer {REDACTED}"} for m in listed), listed
    assert listed or not FLAVOURS[FLAVOR].lists_responses  # OpenAI lists none to echo into


def _leaks(folder: Path, extra: dict[str, bytes] | None = None) -> list[tuple[str, str]]:
    """(file, form) for every form of KEY or TOKEN found in any file under `folder`."""
    blobs = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    blobs.update(extra or {})
    return [(name, form) for name, blob in blobs.items() for form in FORMS if form.encode() in blob]


def test_an_echoed_key_is_in_no_file_log_or_ledger_sqlite(workdir: Path) -> None:
    """SQLite ledger, CLI and daemon: grep of the whole state folder (ledger, -wal, trail,
    export, every command's output, the daemon's stdout and stderr) finds no form of either."""
    proc, url = _standin()
    out = Outputs(workdir / "outputs")
    try:
        write_config(workdir, url, provider_extra=PROVIDER, extra=SWEEP)
        _hostile_cli_session(workdir, url, out)
        with (
            (out.folder / "daemon.out").open("w") as stdout,
            (out.folder / "daemon.err").open("w") as stderr,
        ):
            _daemon_session(workdir, url, stdout, stderr)
    finally:
        proc.terminate()
        proc.wait(10)
    _assert_scrubbed_on_the_way_in(workdir)
    assert (out.folder / "daemon.out").stat().st_size > 0
    assert _leaks(workdir) == []


def _daemon_session(workdir: Path, url: str, stdout: object, stderr: object) -> None:
    """`retention run` with the hostile key and token: ingest three IDs with the token, let the
    echoing provider delete them (30% 500s), then SIGTERM."""
    config = workdir / "retention.yaml"
    config.write_text(config.read_text() + "server:\n  listen: 127.0.0.1:0\n")
    seed(url, [{"id": f"g{i}"} for i in range(3)])
    _knobs(url, error_rate=0.3)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "retention", "-v", "run"],
        cwd=workdir,
        env=user_env(ENV),
        stdout=stdout,  # type: ignore[arg-type]
        stderr=stderr,  # type: ignore[arg-type]
        text=True,
    )
    try:
        port = _listening_port(workdir / "outputs" / "daemon.out", daemon)
        body = {"records": [{"id": f"g{i}", "created_at": LONG_AGO} for i in range(3)]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/records",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert urllib.request.urlopen(request, timeout=10).status == 202
        deadline = time.monotonic() + 15
        ingested = {"g0", "g1", "g2"}
        while time.monotonic() < deadline and not _closed(workdir) >= ingested:
            time.sleep(0.2)
        assert _closed(workdir) >= ingested
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0


def _closed(workdir: Path) -> set[str]:
    """IDs the trail records as deleted, absent or failed."""
    ends = ("response.deleted", "response.absent", "response.failed")
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    return {r["response_id"] for r in map(json.loads, lines) if r["event"] in ends}


def _listening_port(log: Path, daemon: subprocess.Popen[str]) -> int:
    """The port the daemon's `http.listening` line names."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if '"http.listening"' in line:
                return int(json.loads(line)["port"])
        assert daemon.poll() is None, "the daemon exited"
        time.sleep(0.05)
    raise TimeoutError("the daemon did not listen")


@pytest.mark.postgres
def test_an_echoed_key_is_in_no_file_or_row_postgres(workdir: Path, pg_url: str) -> None:
    """PostgreSQL ledger: the same CLI session; neither the state folder nor a `pg_dump` of the
    database holds any form of the key or the token."""
    proc, url = _standin()
    out = Outputs(workdir / "outputs")
    try:
        write_config(
            workdir, url, provider_extra=PROVIDER, extra=f"database_url: {pg_url}\n{SWEEP}"
        )
        assert out.run(workdir, "db", "upgrade").returncode == 0
        _hostile_cli_session(workdir, url, out)
    finally:
        proc.terminate()
        proc.wait(10)
    _assert_scrubbed_on_the_way_in(workdir)
    dump = subprocess.run(
        ["pg_dump", "--data-only", pg_url.replace("postgresql+psycopg://", "postgresql://")],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert b"response.deleted" in dump and REDACTED.encode() in dump
    assert _leaks(workdir, {"pg_dump": dump}) == []
