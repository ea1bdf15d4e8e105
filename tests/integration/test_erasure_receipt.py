"""Erasure receipts from a real ledger: issued by `retention erasure receipt` once the request
completes, checked by `erasure verify-receipt` where there is no configuration at all."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from retention.audit.erasure_receipt_format import check_erasure_receipt, erasure_receipt_text
from retention.audit.signatures import load_public
from retention.evidence.signing_key import Signer
from retention.services.erasure import checked_request, request_erasure
from tests.helpers import POLICIES, cli
from tests.integration.conftest import Env

HOLD = POLICIES.replace("ids: [resp_held]", "ids: [resp_held, a_held]")
VALUE = "alice-7f3a@example.org"  # the subject's raw value: never in a receipt


@pytest.fixture
def erased(make_env: Any) -> tuple[Env, str]:
    """Alice: one record deleted before her request, two deleted for it, one held; Bob's
    record untouched. The request is completed; returns the env and the erasure ID."""
    env = make_env(policies=HOLD)
    env.record("a_old", metadata={"user_id": VALUE})
    env.standin.store.create({"id": "a_old"})
    env.sweep()  # a_old is long expired: deleted under its policy, before any request
    young = timedelta(minutes=1)
    env.record("a_1", "a_2", "a_held", age=young, metadata={"user_id": VALUE})
    env.record("b_1", age=young, metadata={"user_id": "bob"})
    for rid in ("a_1", "a_2", "a_held", "b_1"):
        env.standin.store.create({"id": rid})
    request = checked_request({"user_id": VALUE}, "asked by mail", "T-1", env.settings)
    erasure_id = request_erasure(env.ledger, env.settings, request)["erasure_id"]
    opened = cli("erasure", "receipt", erasure_id, cwd=env.path)
    assert opened.returncode == 2 and "still open" in opened.stderr, opened.stderr
    env.sweep()
    key_file = env.settings.audit.signing_key_file
    assert key_file is not None
    Signer.from_file(key_file, create=True)  # as `retention run` makes it; no checkpoint yet
    (env.path / "pub.pem").write_text(cli("audit", "pubkey", cwd=env.path).stdout)
    return env, erasure_id


def _verify(where: Path, path: Path, *args: str) -> Any:
    """`erasure verify-receipt PATH --pubkey pub.pem ARGS` in a folder without configuration."""
    return cli("erasure", "verify-receipt", str(path), *args, cwd=where)


def test_the_receipt_of_a_completed_erasure_verifies_alone(
    erased: tuple[Env, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The bundle is written 0600, verifies with the public key alone, counts 3 deleted and 1
    withheld, and holds no raw subject value."""
    env, erasure_id = erased
    made = cli("erasure", "receipt", erasure_id, "-O", "bundle.json", cwd=env.path)
    assert made.returncode == 0, made.stderr
    bundle = env.path / "bundle.json"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    text = bundle.read_text()
    assert VALUE not in text and "alice" not in text
    data = json.loads(text)
    assert [r["record"]["response_id"] for r in data["receipts"]] == ["a_1", "a_2", "a_old"]
    assert [w["response_id"] for w in data["withheld"]] == ["a_held"]
    elsewhere = tmp_path_factory.mktemp("auditor")
    (elsewhere / "pub.pem").write_text((env.path / "pub.pem").read_text())
    (elsewhere / "bundle.json").write_text(text)
    checked = _verify(elsewhere, elsewhere / "bundle.json", "--pubkey", "pub.pem")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"valid: erasure {erasure_id} requested at ")
    assert "4 records, 3 deleted, 0 absent, 0 failed, 1 withheld" in checked.stdout
    assert "2 of the 3 deletions name this request" in checked.stdout
    assert "withheld: a_held (fireworks) by hold case-2026-113" in checked.stdout
    as_json = _verify(elsewhere, elsewhere / "bundle.json", "--pubkey", "pub.pem", "-o", "json")
    facts = json.loads(as_json.stdout)
    assert facts["valid"] and (facts["linked"], facts["listed"]) == (2, 1)


def test_stdout_gives_the_same_checkable_bundle(erased: tuple[Env, str]) -> None:
    """Without -O the bundle goes to stdout, and each of its receipts is a deletion receipt
    `audit verify-receipt` takes on its own."""
    env, erasure_id = erased
    made = cli("erasure", "receipt", erasure_id, cwd=env.path)
    assert made.returncode == 0, made.stderr
    key = load_public((env.path / "pub.pem").read_bytes())
    assert check_erasure_receipt(made.stdout, key) is None
    single = env.path / "one.json"
    single.write_text(json.dumps(json.loads(made.stdout)["receipts"][0], sort_keys=True))
    one = cli("audit", "verify-receipt", str(single), "--pubkey", "pub.pem", cwd=env.path)
    assert one.returncode == 1  # not canonical as written here: the check is byte-exact
    receipt = json.loads(made.stdout)["receipts"][0]
    single.write_text(erasure_receipt_text(receipt))  # canonical JSON and a newline
    one = cli("audit", "verify-receipt", str(single), "--pubkey", "pub.pem", cwd=env.path)
    assert one.returncode == 0 and one.stdout.startswith("valid: a_1 deleted"), one.stdout


def test_a_forged_bundle_is_invalid(erased: tuple[Env, str]) -> None:
    """A dropped receipt, an emptied withheld list or a bundle checked against another key
    exits 1 with the reason."""
    env, erasure_id = erased
    made = cli("erasure", "receipt", erasure_id, cwd=env.path)
    data = json.loads(made.stdout)
    forged = env.path / "forged.json"
    dropped = {**data, "receipts": data["receipts"][1:]}
    forged.write_text(erasure_receipt_text(dropped))
    result = _verify(env.path, forged, "--pubkey", "pub.pem")
    assert result.returncode == 1
    assert result.stdout.startswith("INVALID: the receipts hold 2 response.deleted records")
    forged.write_text(erasure_receipt_text({**data, "withheld": []}))
    result = _verify(env.path, forged, "--pubkey", "pub.pem")
    assert result.returncode == 1 and "withheld_records" in result.stdout
    fingerprint = "sha256:" + "0" * 64
    forged.write_text(made.stdout)
    result = _verify(env.path, forged, "--fingerprint", fingerprint)
    assert result.returncode == 1 and "does not have the fingerprint" in result.stdout


def test_bad_usage_exits_2(erased: tuple[Env, str]) -> None:
    """An unknown request, a missing file, or verify-receipt without a key is a usage error."""
    env, erasure_id = erased
    unknown = cli("erasure", "receipt", "er_nosuch", cwd=env.path)
    assert unknown.returncode == 2 and "no erasure request" in unknown.stderr
    missing = _verify(env.path, env.path / "bundle.json", "--pubkey", "pub.pem")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    made = cli("erasure", "receipt", erasure_id, "-O", "bundle.json", cwd=env.path)
    assert made.returncode == 0, made.stderr
    keyless = cli("erasure", "verify-receipt", "bundle.json", cwd=env.path)
    assert keyless.returncode == 2 and "--pubkey" in keyless.stderr
