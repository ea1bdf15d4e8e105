"""Two daemons on one PostgreSQL ledger, configured as deploy/kubernetes/postgres configures
its pods, share the work without deleting anything twice, each on a chain named after its pod."""

from __future__ import annotations

import collections
import json
import secrets
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.certificates import self_signed_pem
from tests.helpers import FLAVOR, LONG_AGO, cli, seed, standin_requests

pytestmark = pytest.mark.postgres
N = 2000
POSTGRES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "postgres"
# what the Deployment's pods are called: NAME-TEMPLATEHASH-RANDOM
PODS = ("retention-7d9f8b6c4d-x2k9q", "retention-7d9f8b6c4d-m4p7z")


def _pod_name_variable() -> str:
    """The variable the Deployment fills with the pod's name (Downward API)."""
    deployment = yaml.safe_load((POSTGRES / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (name,) = [
        env["name"]
        for env in container["env"]
        if env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
    ]
    return str(name)


def _pod_config(workdir: Path, pg_url: str, standin: str) -> None:
    """The ConfigMap's retention.yaml as shipped, its paths and addresses moved here, with the
    key files the init container would copy (0400): what a pod of the Deployment reads."""
    keys = workdir / "keys"
    keys.mkdir()
    cert, key = self_signed_pem()
    signing = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = {
        "database-password": "unused-by-trust-auth",
        "fireworks-api-key": "test-key",
        "ingest-token": secrets.token_hex(16),
        "erasure-key": secrets.token_hex(32),
        "audit-signing.key": signing.decode(),
        "tls.crt": cert,
        "tls.key": key,
    }
    for name, text in files.items():
        (keys / name).write_text(text)
        (keys / name).chmod(0o400)
    config = (POSTGRES / "config" / "retention.yaml").read_text()
    database = pg_url.replace("postgresql+psycopg://", "postgresql://")
    for old, new in (
        ("/run/retention/keys", str(keys)),
        ("postgresql://retention@postgres:5432/retention", database),
        ("https://api.fireworks.ai/inference/v1", standin),
        ("my-account", "acme"),
        ("0.0.0.0:8787", "127.0.0.1:0"),
        ("  interval: 60s", "  interval: 1s\n  batch_size: 100"),
    ):
        assert old in config, old
        config = config.replace(old, new)
    (workdir / "retention.yaml").write_text(config)
    (workdir / "policies.yaml").write_text(
        (POSTGRES.parent / "common" / "config" / "policies.yaml").read_text()
    )


@pytest.mark.skipif(FLAVOR != "fireworks", reason="the deploy example is Fireworks' config")
def test_two_daemons_on_postgres(pg_url: str, workdir: Path, standin_process: str) -> None:
    """2,000 due: all deleted, at most 1% duplicate DELETEs, one terminal event each; the
    trail's chains are the import's and the two pods' names, and it verifies."""
    url = standin_process
    _pod_config(workdir, pg_url, url)
    assert cli("db", "upgrade", cwd=workdir).returncode == 0
    ids = [f"rep{i}" for i in range(N)]
    seed(url, [{"id": i} for i in ids])
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)
    )
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    variable = _pod_name_variable()
    daemons = [DaemonProcess(workdir, {variable: pod}) for pod in PODS]
    try:
        for _ in range(120):
            status = json.loads(cli("status", "-o", "json", cwd=workdir).stdout)
            if status["states"]["pending"] == 0:
                break
            time.sleep(0.5)
    finally:
        assert [d.stop() for d in daemons] == [0, 0]
    assert status["states"]["deleted"] == N
    assert status["ledger"].endswith(pg_url.rsplit("/", 1)[1])
    assert ":***@" in status["ledger"] and "unused-by-trust-auth" not in json.dumps(status)
    counts = collections.Counter(
        r["path"] for r in standin_requests(url) if r["method"] == "DELETE"
    )
    assert sum(n - 1 for n in counts.values()) <= N // 100
    assert cli("audit", "export", "--out", "ex.jsonl", cwd=workdir).returncode == 0
    records = [json.loads(line) for line in (workdir / "ex.jsonl").read_text().splitlines()]
    terminal = collections.Counter(
        r["response_id"] for r in records if r["event"] in ("response.deleted", "response.absent")
    )
    assert len(terminal) == N and max(terminal.values()) == 1
    assert {r["chain"] for r in records} == {"main", *PODS}  # main: the CLI's import
    started = {r["chain"] for r in records if r["event"] == "daemon.started"}
    assert started == set(PODS)
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    result = cli("audit", "verify", "ex.jsonl", "--pubkey", "pub.pem", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 chain(s)" in result.stdout
