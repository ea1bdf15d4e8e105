"""Erasure receipts from a real ledger: issued by `retention erasure receipt` once the request
completes, with the list of its records the completion signed, and checked by `erasure
verify-receipt` where there is no configuration at all."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from retention.audit.erasure_receipt_format import check_erasure_receipt, erasure_receipt_text
from retention.audit.signatures import load_public
from retention.evidence.signing_key import Signer
from retention.services.erasure import checked_request, request_erasure
from retention.sweep.hooks import Hooks
from tests.helpers import POLICIES, cli
from tests.integration.conftest import Env

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "auditors-guide.md"
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
    assert [(e["response_id"], e["outcome"]) for e in data["records"]] == [
        ("a_1", "deleted"),
        ("a_2", "deleted"),
        ("a_held", "withheld"),
        ("a_old", "deleted"),
    ]
    assert [w["response_id"] for w in data["withheld"]] == ["a_held"]
    elsewhere = tmp_path_factory.mktemp("auditor")
    (elsewhere / "pub.pem").write_text((env.path / "pub.pem").read_text())
    (elsewhere / "bundle.json").write_text(text)
    checked = _verify(elsewhere, elsewhere / "bundle.json", "--pubkey", "pub.pem")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"valid: erasure {erasure_id} requested at ")
    assert "4 records, 3 deleted, 0 absent, 0 failed, 1 withheld" in checked.stdout
    assert (
        "every record is in the list the completion signs; 2 of the 3 deletions name this "
        "request, the others were gone before it" in checked.stdout
    )
    assert "withheld: a_held (fireworks) by hold case-2026-113" in checked.stdout
    as_json = _verify(elsewhere, elsewhere / "bundle.json", "--pubkey", "pub.pem", "-o", "json")
    facts = json.loads(as_json.stdout)
    assert facts["valid"] and (facts["linked"], facts["unlinked"]) == (2, 1)


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
    """A dropped receipt, a record dropped from the list (with its receipt), an outcome
    changed, an emptied withheld list or a bundle checked against another key exits 1 with the
    reason."""
    env, erasure_id = erased
    made = cli("erasure", "receipt", erasure_id, cwd=env.path)
    data = json.loads(made.stdout)
    forged = env.path / "forged.json"
    dropped = {**data, "receipts": data["receipts"][1:]}
    forged.write_text(erasure_receipt_text(dropped))
    result = _verify(env.path, forged, "--pubkey", "pub.pem")
    assert result.returncode == 1
    assert result.stdout == "INVALID: records[0]: a_1 is deleted, but no receipt proves it\n"
    unlisted = {**data, "records": data["records"][1:], "receipts": data["receipts"][1:]}
    changed = json.loads(made.stdout)
    changed["records"][2]["outcome"] = "deleted"  # a_held
    for bundle in (unlisted, changed):
        forged.write_text(erasure_receipt_text(bundle))
        result = _verify(env.path, forged, "--pubkey", "pub.pem")
        assert result.returncode == 1 and "(records_sha256)" in result.stdout, result.stdout
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


def test_a_second_request_of_the_same_person_is_proven_by_its_list(
    erased: tuple[Env, str],
) -> None:
    """Alice asks again once everything is gone: the request completes at once, and its
    receipt proves the deletions of her first request (and the earlier one) by its list."""
    env, first = erased
    request = checked_request({"user_id": VALUE}, "asked again", None, env.settings)
    summary = request_erasure(env.ledger, env.settings, request)
    assert summary["state"] == "completed" and summary["already_gone"] == 3
    made = cli("erasure", "receipt", summary["erasure_id"], "-O", "again.json", cwd=env.path)
    assert made.returncode == 0, made.stderr
    data = json.loads((env.path / "again.json").read_text())
    named = [r["record"]["details"].get("erasure_id") for r in data["receipts"]]
    assert named == [first, first, None]  # a_1, a_2 for the first request; a_old at its deadline
    checked = _verify(env.path, env.path / "again.json", "--pubkey", "pub.pem", "-o", "json")
    facts = json.loads(checked.stdout)
    assert checked.returncode == 0 and (facts["linked"], facts["unlinked"]) == (0, 3)


def test_a_record_failed_at_completion_stays_failed_in_the_receipt(make_env: Any) -> None:
    """A record that failed when the request completed, retried and deleted since, is listed
    failed with no receipt: the list is the one the completion signed."""
    env = make_env()
    env.record("f_1", "f_2", metadata={"user_id": VALUE})  # past its own deadline once retried
    for rid in ("f_1", "f_2"):
        env.standin.store.create({"id": rid})
    request = checked_request({"user_id": VALUE}, "asked by mail", None, env.settings)
    erasure_id = request_erasure(env.ledger, env.settings, request)["erasure_id"]
    keep = {"keep_on_delete_rate": 1.0}  # after the probe: a provider failing it gets no DELETE
    env.sweep(hooks=Hooks(probe=lambda result: env.standin.knobs.update(keep)))
    env.standin.knobs.update({"keep_on_delete_rate": 0.0})
    status = cli("erasure", "status", erasure_id, "-o", "json", cwd=env.path)
    assert json.loads(status.stdout)["counts"]["failed"] == 2, status.stdout
    retried = cli("retry", "f_1", "--reason", "provider fixed", cwd=env.path)
    assert retried.returncode == 0, retried.stderr
    env.sweep()
    assert env.deletes().count("f_1") == 2  # failed once, deleted now
    key_file = env.settings.audit.signing_key_file
    assert key_file is not None
    Signer.from_file(key_file, create=True)
    (env.path / "pub.pem").write_text(cli("audit", "pubkey", cwd=env.path).stdout)
    made = cli("erasure", "receipt", erasure_id, "-O", "bundle.json", cwd=env.path)
    assert made.returncode == 0, made.stderr
    data = json.loads((env.path / "bundle.json").read_text())
    assert [(e["response_id"], e["outcome"]) for e in data["records"]] == [
        ("f_1", "failed"),
        ("f_2", "failed"),
    ]
    assert data["receipts"] == []
    checked = _verify(env.path, env.path / "bundle.json", "--pubkey", "pub.pem")
    assert checked.returncode == 0, checked.stdout
    assert "  failed: f_1 (fireworks)\n  failed: f_2 (fireworks)\n" in checked.stdout


def _guide_check() -> str:
    """The guide's erasure receipt recipe, with its deletion receipt check made the function
    `check(r, *events)` as the guide says."""
    guide = GUIDE.read_text()

    def block(title: str) -> list[str]:
        """The Python block of the guide's section `title`, by line."""
        section = guide.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
        return section.split("```python\n", 1)[1].split("```", 1)[0].splitlines()

    single = block("Checking a deletion receipt")
    start = next(i for i, line in enumerate(single) if line.startswith("rec, cp, i, n"))
    outside = ("key = ", "canon = ", "pem = ", "import ", "from ")
    top = [line for line in single if line.startswith(outside)]
    body = [
        line.replace(
            'rec["event"] in ("response.deleted", "response.absent")', 'rec["event"] in events'
        )
        for line in single[start:]
        if not line.startswith(("assert text == canon(r)", "pem = ", "print("))
    ]
    function = ["def check(r, *events):", *("    " + line for line in body)]
    return "\n".join([*top, *function, *block("Checking an erasure receipt")]) + "\n"


def test_the_guides_recipe_checks_an_erasure_receipt(erased: tuple[Env, str]) -> None:
    """The auditor's guide's recipe accepts the bundle, and refuses it with a record dropped
    from the list, an outcome changed, or a receipt dropped."""
    env, erasure_id = erased
    made = cli("erasure", "receipt", erasure_id, cwd=env.path)
    assert made.returncode == 0, made.stderr
    (env.path / "check.py").write_text(_guide_check())
    data = json.loads(made.stdout)
    dropped = {**data, "records": data["records"][1:], "receipts": data["receipts"][1:]}
    changed = json.loads(made.stdout)
    changed["records"][1]["outcome"] = "absent"
    unproven = {**data, "receipts": data["receipts"][:-1]}
    for bundle, fault in (
        (data, None),
        (dropped, "not the signed list"),
        (changed, "not the signed list"),
        (unproven, "a receipt missing"),
    ):
        (env.path / "erasure.json").write_text(erasure_receipt_text(bundle))
        run = subprocess.run(
            [sys.executable, "check.py"], cwd=env.path, capture_output=True, text=True
        )
        if fault is None:
            assert run.returncode == 0 and run.stdout.startswith(f"valid: {erasure_id} "), run
            assert run.stdout.endswith(" 2 deletions name the request\n"), run.stdout
        else:
            assert run.returncode == 1 and f"AssertionError: {fault}" in run.stderr, run.stderr
