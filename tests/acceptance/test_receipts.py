"""Deletion receipts as their users meet them: issued by the CLI and the daemon, checked by the
tool and by the auditor's guide's thirty lines in a Python that has only `cryptography`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import LONG_AGO, cli, seed, user_env, write_config

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "auditors-guide.md"
FIRST, LATER = ["rc_0", "rc_1", "rc_2"], ["rc_3", "rc_4", "rc_5"]
VALID = re.compile(
    r"valid: (\S+) (deleted|absent) at (\S+), in chain (\S+) at seq (\d+) of a signed tree of "
    r"(\d+) records"
)
TOKEN = "receipt-token-for-tests"


@pytest.fixture
def swept(workdir: Path, standin_process: str) -> Path:
    """Six IDs deleted in two sweeps; only the first sweep's are under a checkpoint yet."""
    write_config(workdir, standin_process, provider_extra="    verify_after_delete: true\n")
    seed(standin_process, [{"id": i} for i in FIRST + LATER])
    for ids in (FIRST, LATER):
        assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
        assert cli("sweep", cwd=workdir).returncode == 0
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    (workdir / "auditor").mkdir()
    return workdir


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding `cryptography` alone (built once a session); its python."""
    home = tmp_path_factory.mktemp("clean-venv")
    python = home / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "cryptography"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if os.environ.get("RETENTION_REQUIRE_PG"):  # CI: the guide's claim must be shown
            pytest.fail(f"cannot build a virtualenv with cryptography: {exc}")
        pytest.skip(f"cannot build a virtualenv with cryptography: {exc}")
    return python


def checkpoints(workdir: Path) -> list[dict]:  # type: ignore[type-arg]
    """The audit.checkpoint records in the audit file."""
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "audit.checkpoint"]


def receipt(workdir: Path, response_id: str, name: str) -> Path:
    """`audit receipt ID -o name`, which must succeed."""
    result = cli("audit", "receipt", response_id, "--out", name, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir / name


def verify(workdir: Path, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`audit verify-receipt PATH ARGS` run where there is no configuration at all."""
    return cli("audit", "verify-receipt", str(path), *args, cwd=workdir / "auditor")


def flipped(path: Path, position: int, name: str) -> Path:
    """A copy of the file with the byte at `position` XOR 0x01."""
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    copy = path.with_name(name)
    copy.write_bytes(bytes(data))
    return copy


def test_a_receipt_signs_an_uncovered_deletion_and_verifies(swept: Path) -> None:
    """An uncovered deletion gets a checkpoint first; the 0600 file verifies with no config."""
    before = len(checkpoints(swept))
    path = receipt(swept, LATER[1], "r.json")
    assert len(checkpoints(swept)) == before + 1
    assert path.stat().st_mode & 0o777 == 0o600
    result = verify(swept, path, "--pubkey", str(swept / "pub.pem"))
    assert result.returncode == 0, result.stdout + result.stderr
    found = VALID.fullmatch(result.stdout.strip())
    assert found is not None, result.stdout
    assert found.group(1, 2, 4) == (LATER[1], "deleted", "main")
    assert int(found.group(5)) <= int(found.group(6))
    first = receipt(swept, FIRST[0], "r0.json")
    receipt(swept, LATER[1], "again.json")
    assert len(checkpoints(swept)) == before + 1, "a covered deletion needs no new checkpoint"
    assert (swept / "again.json").read_bytes() == path.read_bytes()
    assert verify(swept, first, "--pubkey", str(swept / "pub.pem")).returncode == 0
    old, new = (json.loads(p.read_text())["checkpoint"]["seq"] for p in (first, path))
    assert old < new


def test_the_key_must_be_pinned(swept: Path) -> None:
    """Another key or fingerprint is INVALID (exit 1); no key pinned is a usage error (2)."""
    path = receipt(swept, FIRST[1], "r.json")
    fingerprint = json.loads(path.read_text())["checkpoint"]["details"]["key_fingerprint"]
    assert verify(swept, path, "--fingerprint", fingerprint).returncode == 0
    other = "sha256:" + "ab" * 32
    result = verify(swept, path, "--fingerprint", other)
    assert result.returncode == 1 and result.stdout.startswith("INVALID: "), result.stdout
    stranger = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (swept / "stranger.pem").write_bytes(stranger)
    result = verify(swept, path, "--pubkey", str(swept / "stranger.pem"))
    assert result.returncode == 1 and "another signing key" in result.stdout
    result = verify(swept, path)
    assert result.returncode == 2 and "--pubkey" in result.stderr
    assert verify(swept, path, "--fingerprint", "sha256:ABC").returncode == 2


def test_after_a_key_rotation_a_new_receipt_verifies_under_the_new_key(swept: Path) -> None:
    """After `rotate-key` a receipt is signed by the new key; the old receipt needs the old key."""
    old = receipt(swept, FIRST[0], "old.json")
    assert cli("audit", "rotate-key", cwd=swept).returncode == 0
    (swept / "new.pem").write_text(cli("audit", "pubkey", cwd=swept).stdout)
    new = receipt(swept, FIRST[0], "new.json")
    assert verify(swept, new, "--pubkey", str(swept / "new.pem")).returncode == 0
    assert verify(swept, old, "--pubkey", str(swept / "new.pem")).returncode == 1
    assert verify(swept, old, "--pubkey", str(swept / "pub.pem")).returncode == 0


def test_verify_receipt_loads_no_database_stack(swept: Path) -> None:
    """`verify-receipt` runs to its verdict without importing SQLAlchemy or reading a config."""
    path = receipt(swept, FIRST[0], "r.json")
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules if 'sqlalchemy' in m)))\n"
        f"sys.argv = ['retention', 'audit', 'verify-receipt', {str(path)!r}, '--pubkey',"
        f" {str(swept / 'pub.pem')!r}]\n"
        "runpy.run_module('retention', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=swept / "auditor",
        env=user_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"valid: {FIRST[0]} deleted at ")
    assert result.stdout.splitlines()[-1] == "[]"


def test_json_output(swept: Path) -> None:
    """`-o json` gives the verdict and the receipt's facts."""
    path = receipt(swept, FIRST[2], "r.json")
    result = verify(swept, path, "--pubkey", str(swept / "pub.pem"), "-o", "json")
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["valid"] is True
    assert data["response_id"] == FIRST[2] and data["outcome"] == "deleted"
    assert data["seq"] < data["checkpoint_seq"] and data["tree_size"] == data["checkpoint_seq"] - 1
    bad = flipped(path, 40, "bad.json")
    result = verify(swept, bad, "--pubkey", str(swept / "pub.pem"), "-o", "json")
    assert result.returncode == 1 and json.loads(result.stdout)["valid"] is False


def test_a_changed_byte_is_invalid(swept: Path) -> None:
    """One byte changed in each part of a receipt makes `verify-receipt` say INVALID, exit 1."""
    path = receipt(swept, LATER[0], "r.json")
    text = path.read_text()
    positions = {
        "record": text.index('"response_id"') + 16,
        "proof": text.index('"inclusion_proof":["') + 25,
        "signature": text.index('"signature":"') + 20,
        "public_key": text.index("BEGIN PUBLIC KEY") + 40,
        "newline": len(text) - 1,
    }
    for where, position in positions.items():
        bad = flipped(path, position, f"bad-{where}.json")
        result = verify(swept, bad, "--pubkey", str(swept / "pub.pem"))
        assert result.returncode == 1, (where, result.stdout, result.stderr)
        assert result.stdout.startswith("INVALID: "), (where, result.stdout)


def test_stdout_and_refusals(swept: Path) -> None:
    """Without -o the receipt goes to stdout; an ID never deleted or an invalid ID exits 2."""
    path = receipt(swept, FIRST[0], "r.json")
    result = cli("audit", "receipt", FIRST[0], cwd=swept)
    assert result.returncode == 0 and result.stdout == path.read_text()
    assert cli("record", "rc_kept", cwd=swept).returncode == 0
    for missing in ("rc_kept", "never_seen"):
        result = cli("audit", "receipt", missing, cwd=swept)
        assert result.returncode == 2
        assert f"no deletion of {missing} is recorded" in result.stderr
    result = cli("audit", "receipt", "../etc/passwd", cwd=swept)
    assert result.returncode == 2 and "invalid response ID" in result.stderr


GUIDE_DRIVER = """\
import contextlib, io, sys
snippet, original = open("check.py").read(), open("receipt.json", "rb").read()
assert "retention" not in sys.modules
for module in ("retention", "sqlalchemy"):
    try:
        __import__(module)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{module} is importable here")
accepted = []
for position in range(len(original)):
    changed = bytearray(original)
    changed[position] ^= 0x01
    open("receipt.json", "wb").write(changed)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(snippet, {})
    except Exception:
        continue
    accepted.append(position)
open("receipt.json", "wb").write(original)
print(len(original), accepted)
"""


def guide_snippet() -> str:
    """The Python block of the guide's section on checking a deletion receipt."""
    section = GUIDE.read_text().split("## Checking a deletion receipt", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_guides_thirty_lines_check_a_receipt_alone(swept: Path, clean_python: Path) -> None:
    """With only `cryptography`, the guide's snippet accepts a receipt, and no one-byte change."""
    snippet = guide_snippet()
    assert 25 <= len(snippet.splitlines()) <= 40
    assert re.findall(r"^(?:import|from) (\S+)", snippet, re.MULTILINE) == [
        "base64,",
        "cryptography.hazmat.primitives.serialization",
    ]
    path = receipt(swept, LATER[2], "r.json")
    alone = swept / "alone"
    alone.mkdir()
    (alone / "check.py").write_text(snippet)
    (alone / "receipt.json").write_bytes(path.read_bytes())
    (alone / "pub.pem").write_bytes((swept / "pub.pem").read_bytes())
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """The clean python in `alone`, with no variable of ours."""
        return subprocess.run(
            [str(clean_python), *args], cwd=alone, env=env, capture_output=True, text=True
        )

    result = run("check.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"valid: {LATER[2]} response.deleted ")
    flipped(alone / "receipt.json", 100, "receipt.json")
    result = run("check.py")
    assert result.returncode == 1 and "Error" in result.stderr
    (alone / "receipt.json").write_bytes(path.read_bytes())
    (alone / "driver.py").write_text(GUIDE_DRIVER)
    result = run("driver.py")
    assert result.returncode == 0, result.stderr
    size, accepted = result.stdout.split(" ", 1)
    assert int(size) == len(path.read_bytes()) and accepted.strip() == "[]"


@pytest.fixture
def daemon(workdir: Path, standin_process: str) -> Iterator[DaemonProcess]:
    """A running daemon with an ingest token, sweeping every second, discovering nothing."""
    write_config(
        workdir,
        standin_process,
        # no discovery: it could enrol the seeded IDs (as new) before the ingest does
        extra="sweep:\n  interval: 1s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n",
    )
    proc = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    yield proc
    if proc.proc.poll() is None:
        proc.stop()


def fetch(daemon: DaemonProcess, path: str, token: str | None) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a GET on the daemon."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(daemon.url(path), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_daemon_serves_receipts(
    daemon: DaemonProcess, workdir: Path, standin_process: str
) -> None:
    """GET /v1/receipts/ID verifies; 401 without the token, 404 never deleted, 400 invalid."""
    ids = ["dm_0", "dm_1"]
    seed(standin_process, [{"id": i} for i in ids])
    records = [{"id": i, "created_at": LONG_AGO} for i in ids]
    assert daemon.request("/v1/records", body={"records": records}, token=TOKEN)[0] == 202
    assert fetch(daemon, "/v1/receipts/dm_0", None)[0] == 401
    assert fetch(daemon, "/v1/receipts/dm_0", "wrong")[0] == 401
    answer = fetch(daemon, "/v1/receipts/dm_0", TOKEN)
    deadline = time.monotonic() + 30
    while answer[0] == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = fetch(daemon, "/v1/receipts/dm_0", TOKEN)
    status, content_type, body = answer
    assert status == 200, body
    assert content_type == "application/json"
    text = body.decode()
    assert text.endswith("}\n") and text.count("\n") == 1
    (workdir / "r.json").write_bytes(body)
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    (workdir / "auditor").mkdir()
    result = verify(workdir, workdir / "r.json", "--pubkey", str(workdir / "pub.pem"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("valid: dm_0 deleted at ")
    status, _, body = fetch(daemon, "/v1/receipts/never_deleted", TOKEN)
    assert status == 404 and b"no deletion of never_deleted" in body
    assert fetch(daemon, "/v1/receipts/bad%20id", TOKEN)[0] == 400
    assert daemon.stop() == 0
