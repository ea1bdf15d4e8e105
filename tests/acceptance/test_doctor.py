"""`retention doctor` as an operator runs it first: each broken setup names its failing check,
a good one exits 0."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.http_router import free_port, html_404, json_404
from tests.certificates import write_certificate
from tests.helpers import FLAVOR, STANDIN_ARGS, ago, cli, seed, write_config

BLIND_KEY = "blind-key"


@pytest.fixture
def standin_url() -> Iterator[str]:
    """A stand-in requiring account `acme`, with a second key that sees nothing."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *STANDIN_ARGS, "--blind-key", BLIND_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(10)


def _doctor(workdir: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """Exit code and {check: "RESULT detail"} of `retention doctor -o json`."""
    result = cli("doctor", "-o", "json", cwd=workdir, env=env)
    assert "Traceback" not in result.stderr
    assert "blocking_call_on_loop" not in result.stderr  # no ledger call on its event loop
    checks = json.loads(result.stdout)["checks"]
    return result.returncode, {c["check"]: f"{c['result']} {c['detail']}" for c in checks}


def _failed(checks: dict[str, str]) -> dict[str, str]:
    """Only the checks that failed."""
    return {name: text for name, text in checks.items() if text.startswith("FAIL")}


def test_good_setup_passes_every_check(workdir: Path, standin_url: str) -> None:
    """Against a working stand-in with a recorded ID it can see, every check is OK: exit 0."""
    write_config(workdir, standin_url)
    seed(standin_url, [{"id": "resp_seen"}])
    assert cli("record", "resp_seen", "--created-at", ago(days=1), cwd=workdir).returncode == 0
    code, checks = _doctor(workdir)
    assert code == 0 and not _failed(checks), checks
    assert checks["probe fireworks"].startswith("OK") and "1 of 1" in checks["probe fireworks"]
    table = cli("doctor", cwd=workdir)
    assert table.returncode == 0 and "all checks passed" in table.stdout


@pytest.mark.parametrize(
    ("how", "fragment"),
    [
        ("root", "provider.misconfigured: GET"),
        ("closed", "provider.unreachable"),
        ("https", "TLS failed"),
        ("html", "answered 404"),
        ("json", "/models answered 404"),
        ("blind", "cannot see the recorded responses"),
    ],
)
def test_each_broken_base_url_or_key_fails_the_probe(
    how: str, fragment: str, workdir: Path, standin_url: str
) -> None:
    """Each broken setup of the sweep's acceptance fails exactly the provider's probe."""
    html, json_router = html_404(), json_404()
    port = standin_url.rsplit(":", 1)[1].split("/")[0]
    url = {
        "root": standin_url.removesuffix("/v1"),
        "closed": f"http://127.0.0.1:{free_port()}/v1",
        "https": f"https://127.0.0.1:{port}/v1",
        "html": html.base_url,
        "json": json_router.base_url,
        "blind": standin_url,
    }[how]
    try:
        config = write_config(workdir, url)
        if how == "json":
            config.write_text(config.read_text().replace("kind: fireworks", "kind: openai"))
        assert cli("record", "resp_x", "--created-at", ago(days=1), cwd=workdir).returncode == 0
        code, checks = _doctor(workdir, {"FW_TEST_KEY": BLIND_KEY} if how == "blind" else None)
    finally:
        html.close()
        json_router.close()
    assert code == 1
    assert list(_failed(checks)) == ["probe fireworks"], checks
    assert fragment in checks["probe fireworks"]


def test_key_with_a_line_break_fails_the_key_check(workdir: Path, standin_url: str) -> None:
    """A key file of two lines is named as not header-safe; the probe is skipped, not run."""
    (workdir / "key").write_text("test-key\nsecond line\n")
    (workdir / "key").chmod(0o600)
    config = write_config(workdir, standin_url)
    config.write_text(config.read_text().replace("api_key_env: FW_TEST_KEY", "api_key_file: key"))
    code, checks = _doctor(workdir)
    assert code == 1 and list(_failed(checks)) == ["key fireworks"]
    assert "control character" in checks["key fireworks"]
    assert checks["probe fireworks"].startswith("SKIP")


@pytest.mark.skipif(FLAVOR != "fireworks", reason="the account header is Fireworks' own")
def test_placeholder_account_is_named(workdir: Path, standin_url: str) -> None:
    """`account_id: my-account` fails the account check, and the provider refuses it too."""
    config = write_config(workdir, standin_url)
    config.write_text(config.read_text().replace("account_id: acme", "account_id: my-account"))
    code, checks = _doctor(workdir)
    assert code == 1 and "placeholder" in checks["account fireworks"]
    assert "provider.auth_failed" in checks["probe fireworks"]


def test_missing_key_variable_fails_the_key_check(workdir: Path, standin_url: str) -> None:
    """An unset key variable is named by its variable."""
    write_config(workdir, standin_url)
    code, checks = _doctor(workdir, {"FW_TEST_KEY": ""})
    assert code == 1 and "FW_TEST_KEY is not set" in checks["key fireworks"]


def test_shared_signing_key_unwritable_witness_and_ledger(workdir: Path, standin_url: str) -> None:
    """A signing key open to others, a witness folder that cannot be made, a missing
    PostgreSQL database: each is its own failing check with a hint."""
    key = workdir / "audit-signing.key"
    write_config(
        workdir,
        standin_url,
        extra=(
            "database_url: postgresql://postgres@127.0.0.1:5432/retention_nosuchdb\n"
            "audit:\n  witness:\n    - dir: blocker/witness\n"
        ),
    )
    (workdir / "blocker").write_text("a file where the witness folder's parent should be")
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o644)
    code, checks = _doctor(workdir)
    assert code == 1
    assert "chmod 600" in checks["signing key"]
    witness = checks[f"witness dir:{workdir / 'blocker' / 'witness'}"]
    assert witness.startswith("FAIL") and "not writable" in witness
    assert checks["ledger"].startswith("FAIL") and "retention_nosuchdb" in checks["ledger"]


def test_clock_behind_the_trail_fails(workdir: Path, standin_url: str) -> None:
    """An audit event stamped after this host's now (a clock set back) fails the clock check."""
    write_config(workdir, standin_url)
    assert cli("record", "resp_c", cwd=workdir).returncode == 0
    with sqlite3.connect(workdir / "retention.db") as conn:
        conn.execute("UPDATE audit_events SET ts = '2999-01-01 00:00:00.000000'")
    code, checks = _doctor(workdir)
    assert code == 1 and list(_failed(checks)) == ["clock"]
    assert "behind the newest audit event" in checks["clock"]


def test_config_that_does_not_load_exits_2(workdir: Path) -> None:
    """A retention.yaml that does not load is a usage error: one line, exit 2."""
    (workdir / "retention.yaml").write_text("providers: [\n")
    result = cli("doctor", cwd=workdir)
    assert result.returncode == 2 and result.stderr.startswith("retention: error:")
    assert "Traceback" not in result.stderr


def test_provider_option_checks_one_provider(workdir: Path, standin_url: str) -> None:
    """`--provider P` runs only P's checks; an unknown name is a usage error."""
    write_config(workdir, standin_url)
    code, checks = _doctor(workdir)
    assert code == 0 and "probe fireworks" in checks
    assert cli("doctor", "--provider", "fireworks", cwd=workdir).returncode == 0
    assert cli("doctor", "--provider", "nope", cwd=workdir).returncode == 2


def test_tls_key_open_to_others_fails_the_tls_check(workdir: Path, standin_url: str) -> None:
    """A TLS key readable by its group fails doctor's `tls` check, naming the file and the fix,
    before `run` would refuse to start."""
    cert, key = write_certificate(workdir)
    key.chmod(0o640)
    extra = f"server:\n  tls_cert_file: {cert}\n  tls_key_file: {key}\n"
    write_config(workdir, standin_url, extra=extra)
    code, checks = _doctor(workdir)
    assert code == 1 and set(_failed(checks)) == {"tls"}
    assert str(key) in checks["tls"] and "chmod 600" in checks["tls"]
