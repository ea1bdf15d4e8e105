"""Issue 5's capture: an app on the real openai SDK, instrumented, with the daemon up or down."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import retention.capture
from retention.capture.shipper import Shipper
from retention.core.subjects import subject_digest
from retention.errors import ConfigError
from retention.services.subject_key import subject_key
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.certificates import self_signed_pem
from tests.helpers import cli, write_config

pytest.importorskip("openai")
TOKEN = "capture-token"
KUBERNETES_CONFIG = Path(__file__).resolve().parents[2] / "deploy/kubernetes/common/config"

APP = """
import asyncio, json, sys, time
from pathlib import Path
from openai import AsyncOpenAI, OpenAI
import retention.capture

base, ingest, spool = sys.argv[1], sys.argv[2], Path(sys.argv[3])
kw = dict(ingest_url=ingest, token="capture-token", provider="fireworks", spool_path=spool)
client = retention.capture.instrument(OpenAI(base_url=base, api_key="test-key",
    default_headers={"x-fireworks-account-id": "acme"}), **kw)
aclient = retention.capture.instrument(AsyncOpenAI(base_url=base, api_key="test-key",
    default_headers={"x-fireworks-account-id": "acme"}), **kw)
ids = {}
started = time.perf_counter()
ids["plain"] = client.responses.create(model="m", input="hi").id
with client.responses.create(model="m", input="hi", stream=True) as stream:
    for event in stream:
        if event.type == "response.created":
            ids["streamed"] = event.response.id
ids["async"] = asyncio.run(aclient.responses.create(model="m", input="hi")).id
ids["unstored"] = client.responses.create(model="m", input="hi", store=False).id
ids["elapsed_s"] = time.perf_counter() - started
print(json.dumps(ids), flush=True)
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline and (not spool.exists() or spool.stat().st_size):
    time.sleep(0.1)
"""


def _free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ledger_ids(workdir: Path) -> set[str]:
    """Response IDs in the ledger."""
    return {r["response_id"] for r in json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)}


@pytest.fixture
def setup(workdir: Path, standin_process: str) -> tuple[Path, str, int]:
    """A config for a daemon on a fixed port, and the app's source."""
    port = _free_port()
    write_config(
        workdir,
        standin_process,
        extra=f"sweep:\n  interval: 60s\nserver:\n  listen: 127.0.0.1:{port}\n",
    )
    (workdir / "app.py").write_text(APP)
    return workdir, standin_process, port


def _app(workdir: Path, base: str, port: int, wait_s: float) -> subprocess.Popen[str]:
    """Start the app."""
    return subprocess.Popen(
        [
            sys.executable,
            "app.py",
            base,
            f"http://127.0.0.1:{port}",
            str(workdir / "spool.jsonl"),
            str(wait_s),
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_exactly_the_stored_ids_reach_the_ledger(setup: tuple[Path, str, int]) -> None:
    """Plain, streamed and async calls are recorded; the store=False one is not."""
    workdir, base, port = setup
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        app = _app(workdir, base, port, 5)
        out, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
        ids = json.loads(out)
        for _ in range(50):
            if _ledger_ids(workdir) >= {ids["plain"], ids["streamed"], ids["async"]}:
                break
            time.sleep(0.1)
        assert _ledger_ids(workdir) == {ids["plain"], ids["streamed"], ids["async"]}
    finally:
        daemon.stop()


def test_app_works_without_the_daemon_and_ids_arrive_later(setup: tuple[Path, str, int]) -> None:
    """With the daemon down the app still works; its IDs arrive once the daemon is back."""
    workdir, base, port = setup
    app = _app(workdir, base, port, 40)
    first = app.stdout.readline()  # type: ignore[union-attr]
    ids = json.loads(first)
    assert ids["elapsed_s"] < 10
    for _ in range(50):
        if (workdir / "spool.jsonl").exists() and (workdir / "spool.jsonl").stat().st_size:
            break
        time.sleep(0.1)
    assert (workdir / "spool.jsonl").stat().st_mode & 0o777 == 0o600
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        app.wait(60)
        assert _ledger_ids(workdir) == {ids["plain"], ids["streamed"], ids["async"]}
        assert (workdir / "spool.jsonl").stat().st_size == 0
    finally:
        daemon.stop()


def test_the_daemons_400_costs_only_the_bad_records(setup: tuple[Path, str, int]) -> None:
    """Against the real daemon, a bad ID and a bad time among 20 good records are dropped
    alone; the 20 reach the ledger."""
    workdir, _, port = setup
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        shipper = Shipper(f"http://127.0.0.1:{port}", TOKEN, workdir / "spool.jsonl")
        good = [f"resp_good_{i}" for i in range(20)]
        for i, rid in enumerate(good):
            shipper.put({"id": rid, "provider": "fireworks", "model": "m"})
            if i == 5:
                shipper.put({"id": "bad id", "provider": "fireworks"})
            if i == 15:
                shipper.put({"id": "resp_bad_time", "created_at": "not a time"})
        for _ in range(100):
            if shipper.counts["sent"] + shipper.counts["dropped_bad"] >= 22:
                break
            time.sleep(0.05)
        assert shipper.counts["sent"] == 20 and shipper.counts["dropped_bad"] == 2
        assert _ledger_ids(workdir) == set(good)
    finally:
        daemon.stop()


SUBJECT_APP = """
import asyncio, json, sys, time
from openai import AsyncOpenAI, OpenAI
import retention.capture

base, ingest, spool, user, safety = sys.argv[1:6]
kw = dict(ingest_url=ingest, token="capture-token", provider="fireworks", spool_path=spool)
heads = {"x-fireworks-account-id": "acme"}
client = retention.capture.instrument(OpenAI(base_url=base, api_key="test-key",
    default_headers=heads), **kw)
aclient = retention.capture.instrument(AsyncOpenAI(base_url=base, api_key="test-key",
    default_headers=heads), **kw)
ask = dict(model="m", input="hi", metadata={"user_id": user}, safety_identifier=safety)
ids = [client.responses.create(**ask).id]
with client.responses.create(**ask, stream=True) as stream:
    ids += [e.response.id for e in stream if e.type == "response.created"]
ids.append(asyncio.run(aclient.responses.create(**ask)).id)
ids.append(client.responses.create(model="m", input="hi", metadata={"user_id": "x" * 600},
    user=user).id)
print(json.dumps(ids), flush=True)
[shipper] = retention.capture._shippers.values()
deadline = time.monotonic() + 20
while shipper.counts["sent"] < len(ids) and time.monotonic() < deadline:
    time.sleep(0.05)
"""


def test_captured_responses_are_indexed_by_subject(setup: tuple[Path, str, int]) -> None:
    """Plain, streamed and async calls of the real SDK with `metadata={"user_id": ...}` and
    `safety_identifier=...` reach the ledger indexed under both subject keys, their values
    nowhere in it; a metadata value too long to keep costs that value, not the ID."""
    workdir, base, port = setup
    config = workdir / "retention.yaml"
    config.write_text(
        config.read_text() + "erasure:\n  subject_keys: [user_id, safety_identifier, user]\n"
    )
    (workdir / "subject_app.py").write_text(SUBJECT_APP)
    user, safety = "person-u1-5eb2", "safety-s1-93bc"
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        app = subprocess.run(
            [sys.executable, "subject_app.py", base, f"http://127.0.0.1:{port}",
             str(workdir / "spool.jsonl"), user, safety],
            cwd=workdir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert app.returncode == 0, app.stderr
        ids = json.loads(app.stdout)
        for _ in range(50):
            if _ledger_ids(workdir) >= set(ids):
                break
            time.sleep(0.1)
        assert _ledger_ids(workdir) == set(ids)
    finally:
        daemon.stop()
    key = subject_key(workdir / "erasure.key")
    both = {subject_digest(key, "user_id", user), subject_digest(key, "safety_identifier", safety)}
    with sqlite3.connect(workdir / "retention.db") as conn:
        index = conn.execute("SELECT response_id, subject FROM record_subjects").fetchall()
    by_id: dict[str, set[str]] = {}
    for rid, digest in index:
        by_id.setdefault(rid, set()).add(digest)
    assert {rid: by_id[rid] for rid in ids[:3]} == {rid: both for rid in ids[:3]}
    assert by_id[ids[3]] == {subject_digest(key, "user", user)}  # its user_id was too long
    listed = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    metadata = {r["response_id"]: r["metadata"] for r in listed}
    assert set(metadata[ids[0]]) == {"user_id", "safety_identifier"}
    assert all(v.startswith("hmac-sha256:") for v in metadata[ids[0]].values())
    stored = b"".join(p.read_bytes() for p in workdir.glob("retention.db*") if p.is_file())
    assert user.encode() not in stored and safety.encode() not in stored


@pytest.mark.parametrize(
    "url",
    ["http://retention.default.svc:8787", "http://10.0.0.7:8787", "http://user:pw@127.0.0.1"],
)
def test_instrument_refuses_to_send_the_token_in_clear(url: str, tmp_path: Path) -> None:
    """http:// beyond loopback (or credentials in the URL) fails at set-up, naming ingest_url."""
    with pytest.raises(ConfigError, match=r"^ingest_url: "):
        retention.capture.instrument(
            httpx.Client(), ingest_url=url, token=TOKEN, spool_path=tmp_path / "spool.jsonl"
        )


def test_an_app_reaches_the_kubernetes_daemon_over_https(
    workdir: Path, standin_process: str
) -> None:
    """The ConfigMap's retention.yaml as shipped, its paths moved under a temporary folder:
    the daemon starts with 0400 key, token and TLS files; an app instrumented with
    `ca_file=` sends its ID over https and it reaches the ledger."""
    keys, data = workdir / "keys", workdir / "data"
    keys.mkdir()
    data.mkdir()
    cert, key = self_signed_pem()
    secrets = {
        "fireworks-api-key": "test-key",
        "ingest-token": TOKEN,
        "audit-signing.key": _ed25519_pem(),
        "tls.crt": cert,
        "tls.key": key,
    }
    for name, text in secrets.items():
        (keys / name).write_text(text)
        (keys / name).chmod(0o400)  # what the pod's init container makes of the Secrets
    config = (KUBERNETES_CONFIG / "retention.yaml").read_text()
    for old, new in (
        ("/run/retention/keys", str(keys)),
        ("/var/lib/retention", str(data)),
        ("0.0.0.0:8787", "127.0.0.1:0"),
        ("https://api.fireworks.ai/inference/v1", standin_process),
        ("my-account", "acme"),
    ):
        assert old in config
        config = config.replace(old, new)
    (workdir / "retention.yaml").write_text(config)
    (workdir / "policies.yaml").write_text((KUBERNETES_CONFIG / "policies.yaml").read_text())
    daemon = DaemonProcess(workdir, {})
    try:
        app = retention.capture.instrument(
            httpx.Client(
                headers={"Authorization": "Bearer test-key", "x-fireworks-account-id": "acme"}
            ),
            ingest_url=f"https://localhost:{daemon.port}",
            token=TOKEN,
            spool_path=workdir / "spool.jsonl",
            ca_file=keys / "tls.crt",
        )
        rid = app.post(f"{standin_process}/responses", json={"model": "m", "input": "hi"}).json()
        for _ in range(50):
            if rid["id"] in _ledger_ids(workdir):
                break
            time.sleep(0.2)
        assert _ledger_ids(workdir) == {rid["id"]}
        assert not (workdir / "spool.jsonl").exists() or not (workdir / "spool.jsonl").read_text()
    finally:
        daemon.stop()


def _ed25519_pem() -> str:
    """A fresh checkpoint signing key, PEM."""
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
