"""Two daemons on one PostgreSQL ledger share the work without deleting anything twice."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import LONG_AGO, cli, seed, standin_requests, write_config

pytestmark = pytest.mark.postgres
N = 2000


def test_two_daemons_on_postgres(pg_url: str, workdir: Path, standin_process: str) -> None:
    """2,000 due: all deleted, at most 1% duplicate DELETEs, one terminal event each, sound."""
    url = standin_process
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    env = {"RETENTION_DATABASE_URL": plain}
    write_config(
        workdir,
        url,
        extra="sweep:\n  interval: 1s\n  batch_size: 100\nserver:\n  listen: 127.0.0.1:0\n",
    )
    assert cli("db", "upgrade", cwd=workdir, env=env).returncode == 0
    ids = [f"rep{i}" for i in range(N)]
    seed(url, [{"id": i} for i in ids])
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)
    )
    assert cli("import", "ids.jsonl", cwd=workdir, env=env).returncode == 0
    daemons = [
        DaemonProcess(workdir, {**env, "RETENTION_AUDIT_CHAIN": f"replica-{n}"}) for n in (1, 2)
    ]
    try:
        for _ in range(120):
            status = json.loads(cli("status", "-o", "json", cwd=workdir, env=env).stdout)
            if status["states"]["pending"] == 0:
                break
            time.sleep(0.5)
    finally:
        assert [d.stop() for d in daemons] == [0, 0]
    assert status["states"]["deleted"] == N
    counts = collections.Counter(
        r["path"] for r in standin_requests(url) if r["method"] == "DELETE"
    )
    assert sum(n - 1 for n in counts.values()) <= N // 100
    assert cli("audit", "export", "--out", "ex.jsonl", cwd=workdir, env=env).returncode == 0
    terminal = collections.Counter(
        json.loads(line)["response_id"]
        for line in (workdir / "ex.jsonl").read_text().splitlines()
        if json.loads(line)["event"] in ("response.deleted", "response.absent")
    )
    assert len(terminal) == N and max(terminal.values()) == 1
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir, env=env).stdout)
    result = cli("audit", "verify", "ex.jsonl", "--pubkey", "pub.pem", cwd=workdir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 chain(s)" in result.stdout, "main (the import) and one chain per replica"
