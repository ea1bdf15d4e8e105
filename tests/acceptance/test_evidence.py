"""Evidence as an auditor checks it: exports, strict verification, and tampering by the host's
own operator (root on the box, sometimes with the real signing key at hand)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from retention.audit.hashchain import canonical
from retention.audit.signatures import public_pem
from retention.evidence.signing_key import Signer
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.forgery import ledger_records, rechain, resign, rewrite_ledger
from tests.helpers import LONG_AGO, auditor_verify, cli, seed, standin_requests, write_config

IDS = [f"ev_{i}" for i in range(20)]


@pytest.fixture
def swept(workdir: Path, standin_process: str) -> Path:
    """20 expired IDs swept with verify_after_delete; two sweeps, so two checkpoints; the
    public key saved as pub.pem, as an auditor receives it."""
    write_config(
        workdir,
        standin_process,
        provider_extra="    verify_after_delete: true\n",
        extra="audit:\n  checkpoint_interval: 0s\n",
    )
    seed(standin_process, [{"id": i} for i in IDS])
    for half in (IDS[:10], IDS[10:]):
        assert cli("record", *half, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
        assert cli("sweep", cwd=workdir).returncode == 0
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    return workdir


def _export(workdir: Path, name: str = "trail.jsonl", *args: str) -> Path:
    """`audit export -o name`."""
    result = cli("audit", "export", "--out", name, *args, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir / name


def _lines(path: Path) -> list[str]:
    """The file's lines."""
    return path.read_text().splitlines()


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    """Write records back as a forger would, dropping the manifest that would betray them."""
    path.write_text("".join(canonical(r) + "\n" for r in records))
    path.with_name(path.name + ".manifest.json").unlink(missing_ok=True)


def _verify(workdir: Path, trail: Path | None, *extra: str) -> tuple[int, dict[str, Any]]:
    """`audit verify [trail] -o json EXTRA` with the real public key: (exit code, verdict)."""
    where = [str(trail)] if trail else []
    result = cli(
        "audit", "verify", *where, "--pubkey", "pub.pem", "-o", "json", *extra, cwd=workdir
    )
    return result.returncode, json.loads(result.stdout) if result.stdout else {}


def _fails(workdir: Path, trail: Path | None, expected: str, *extra: str) -> None:
    """`audit verify` exits 1 and names the kind of fault."""
    code, verdict = _verify(workdir, trail, *extra)
    assert code == 1, verdict
    assert verdict["fault"]["kind"] == expected, verdict["fault"]


def test_each_deletion_is_confirmed_by_a_get(swept: Path, standin_process: str) -> None:
    """The stand-in saw a DELETE and then a GET (404) for each of the 20 IDs."""
    seen = standin_requests(standin_process)
    probes = ("/v1/responses", "/v1/models")
    gets = [r for r in seen if r["method"] == "GET" and not r["path"].endswith(probes)]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in gets) == sorted(IDS)
    rows = json.loads(cli("ls", "-o", "json", cwd=swept).stdout)
    assert {r["state"] for r in rows} == {"deleted"}


def test_export_verifies_by_recipe_and_by_tool(swept: Path) -> None:
    """The export passes the recipe, `audit verify FILE` under the pinned key or fingerprint,
    and `audit verify` of the ledger; it ends on a checkpoint."""
    trail = _export(swept)
    assert auditor_verify(trail) > 40
    assert json.loads(_lines(trail)[-1])["event"] == "audit.checkpoint"
    manifest = json.loads((swept / "trail.jsonl.manifest.json").read_text())
    assert manifest["public_key"] == (swept / "pub.pem").read_text()
    code, verdict = _verify(swept, trail)
    assert code == 0 and verdict["signatures_checked"], verdict
    result = cli(
        "audit", "verify", str(trail), "--fingerprint", manifest["key_fingerprint"], cwd=swept
    )
    assert result.returncode == 0 and "signed checkpoint(s)" in result.stdout, result.stdout
    assert cli("audit", "verify", cwd=swept).returncode == 0
    deleted = [json.loads(x) for x in _lines(trail) if '"response.deleted"' in x]
    assert len(deleted) == 20 and all(r["details"]["verified"] for r in deleted)


def test_verifying_a_file_needs_a_trusted_key(swept: Path) -> None:
    """Without --pubkey or --fingerprint, `verify FILE` exits 2 and says so; --hash-only checks
    links alone and says the signatures were not checked."""
    trail = _export(swept)
    result = cli("audit", "verify", str(trail), cwd=swept)
    assert result.returncode == 2 and "--pubkey" in result.stderr
    result = cli("audit", "verify", str(trail), "--hash-only", cwd=swept)
    assert result.returncode == 0 and "NOT checked" in result.stdout


def test_csv_export_verifies(swept: Path) -> None:
    """The CSV export carries each exact record and verifies too."""
    cli("audit", "export", "--format", "csv", "-O", "trail.csv", cwd=swept)
    assert _verify(swept, swept / "trail.csv")[0] == 0


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("edit", "modified"),
        ("delete", "missing"),
        ("swap", "reordered"),
        ("rehash", "broken_link"),
    ],
)
def test_simple_tampering(swept: Path, tamper: str, expected: str) -> None:
    """Edited, deleted, swapped or re-hashed lines are caught, manifest or not."""
    trail = _export(swept)
    records = [json.loads(x) for x in _lines(trail)]
    if tamper == "edit":
        records[7]["policy"] = "pii"
        trail.write_text("".join(canonical(r) + "\n" for r in records))
        _fails(swept, trail, "modified")  # the manifest's SHA-256 first
    if tamper == "delete":
        del records[10]
    if tamper == "swap":
        records[10], records[11] = records[11], records[10]
    if tamper == "rehash":
        records[12]["response_id"] = "someone_else"
        rechain(records[12:13])
    _write(trail, records)
    _fails(swept, trail, expected)


def test_history_rewritten_without_checkpoints_is_caught_and_never_signed(swept: Path) -> None:
    """The issue's first forgery: a policy changed and a fake deletion added, re-hashed, every
    checkpoint removed, in the ledger and the audit file. `verify` of the file says
    unsigned_chain; the next ordinary sweep refuses to sign the forged head."""
    records = ledger_records(swept / "retention.db")
    records[1]["policy"] = "evals"
    fake = dict(records[2], response_id="never-stored", event="response.deleted")
    forged = [r for r in records if r["event"] != "audit.checkpoint"]
    forged.insert(3, fake)
    rechain(forged)
    rewrite_ledger(swept / "retention.db", forged, audit_file=swept / "audit.jsonl")
    _fails(swept, swept / "audit.jsonl", "unsigned_chain")
    assert cli("record", "late_1", "--created-at", LONG_AGO, cwd=swept).returncode == 0
    result = cli("sweep", cwd=swept)
    assert result.returncode == 1 and "refusing to sign" in result.stderr, result.stderr
    assert not any(r["event"] == "audit.checkpoint" for r in ledger_records(swept / "retention.db"))
    _fails(swept, None, "inconsistent")


def test_a_trail_starting_after_a_trusted_checkpoint_is_unanchored(swept: Path) -> None:
    """A fabricated trail that starts after the checkpoint the auditor holds, with no leading
    checkpoint of its own, is unanchored_start."""
    trail = _export(swept)
    lines = _lines(trail)
    first = next(i for i, x in enumerate(lines) if '"audit.checkpoint"' in x)
    (swept / "held.jsonl").write_text(lines[first] + "\n")
    _write(trail, [json.loads(x) for x in lines[first + 2 :]])
    _fails(swept, trail, "unanchored_start", "--trusted-checkpoint", "held.jsonl")


def test_a_fabricated_side_chain_is_unsigned(swept: Path) -> None:
    """An extra chain `replica-2` holding a deletion, appended to an export, is unsigned_chain."""
    trail = _export(swept)
    records = [json.loads(x) for x in _lines(trail)]
    side = [dict(records[0], chain="replica-2"), dict(records[5], chain="replica-2")]
    side[1]["event"], side[1]["response_id"] = "response.deleted", "invented"
    side[1]["seq"] = 2
    rechain(side)
    _write(trail, [*records, *side])
    _fails(swept, trail, "unsigned_chain")


def test_an_export_cut_short_is_unanchored(swept: Path) -> None:
    """The last checkpoint removed and the manifest gone: the tail is unsigned."""
    trail = _export(swept)
    records = [json.loads(x) for x in _lines(trail)]
    _write(trail, records[:-1])
    _fails(swept, trail, "unanchored")


def test_an_attackers_key_and_manifest_are_not_trusted(swept: Path) -> None:
    """A trail re-signed with an attacker's key, with the attacker's manifest: exit 2 without a
    pinned key, unknown_key with the real key, and the real fingerprint finds no key."""
    trail = _export(swept)
    manifest_file = swept / "trail.jsonl.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    real_fingerprint = manifest["key_fingerprint"]
    attacker = Signer(Ed25519PrivateKey.generate())
    records = [json.loads(x) for x in _lines(trail)]
    records[3]["response_id"] = "rewritten"
    resign(records, attacker)
    _write(trail, records)
    import hashlib

    manifest.update(
        public_key=public_pem(attacker.public),
        key_fingerprint=attacker.fingerprint,
        sha256=hashlib.sha256(trail.read_bytes()).hexdigest(),
    )
    manifest["chains"]["main"].update(last_hash=records[-1]["hash"])
    manifest_file.write_text(json.dumps(manifest))
    assert cli("audit", "verify", str(trail), cwd=swept).returncode == 2
    _fails(swept, trail, "unknown_key")
    result = cli("audit", "verify", str(trail), "--fingerprint", real_fingerprint, cwd=swept)
    assert result.returncode == 2 and "no key with fingerprint" in result.stderr


def test_a_daemon_written_trail_verifies(workdir: Path, standin_process: str) -> None:
    """A trail the daemon wrote (sweeps, checkpoints every second, the one at SIGTERM) exports
    and verifies under the pinned key."""
    write_config(
        workdir,
        standin_process,
        extra="sweep:\n  interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"
        "audit:\n  checkpoint_interval: 1s\n",
    )
    ids = [f"d_{i}" for i in range(5)]
    seed(standin_process, [{"id": i} for i in ids])
    assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    daemon = DaemonProcess(workdir, {})
    try:
        for _ in range(100):
            if len(daemon.events("audit.checkpoint")) >= 3 and daemon.events("response.deleted"):
                break
            time.sleep(0.1)
    finally:
        assert daemon.stop() == 0
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    trail = _export(workdir)
    code, verdict = _verify(workdir, trail)
    assert code == 0, verdict
    assert verdict["chains"]["main"]["checkpoints"] >= 3
    assert _verify(workdir, None)[0] == 0


def test_cronjob_sweeps_far_apart_verify(workdir: Path, standin_process: str) -> None:
    """A trail written only by `retention sweep` runs three times the checkpoint interval apart
    (the CronJob mode) is sound: the gap is a warning, not tampering."""
    write_config(workdir, standin_process, extra="audit:\n  checkpoint_interval: 1s\n")
    for batch in range(3):
        ids = [f"cron_{batch}_{i}" for i in range(3)]
        seed(standin_process, [{"id": i} for i in ids])
        assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
        assert cli("sweep", cwd=workdir).returncode == 0
        time.sleep(3.2)
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    trail = _export(workdir)
    result = cli("audit", "verify", str(trail), "--pubkey", "pub.pem", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no checkpoint between" in result.stderr


def test_partial_exports_verify_and_extend_what_the_auditor_holds(swept: Path) -> None:
    """An export from a time after the first sweep starts at a checkpoint with the frontier in
    its manifest; with --since-checkpoint it proves it extends the auditor's checkpoint."""
    full = _export(swept, "full.jsonl")
    checkpoints = [json.loads(x) for x in _lines(full) if '"audit.checkpoint"' in x]
    (swept / "held.jsonl").write_text(canonical(checkpoints[0]) + "\n")
    since = checkpoints[1]["ts"]
    part = _export(swept, "part.jsonl", "--since", since, "--since-checkpoint", "held.jsonl")
    first = json.loads(_lines(part)[0])
    assert first["event"] == "audit.checkpoint" and first["seq"] > 1
    manifest = json.loads((swept / "part.jsonl.manifest.json").read_text())
    assert manifest["chains"]["main"]["frontier"]["size"] == first["seq"] - 1
    assert manifest["chains"]["main"]["consistency"]["from_size"] == checkpoints[0]["seq"] - 1
    code, verdict = _verify(swept, part, "--trusted-checkpoint", "held.jsonl")
    assert code == 0, verdict
    until = _export(swept, "until.jsonl", "--until", checkpoints[0]["ts"])
    assert _verify(swept, until)[0] == 0
    for narrowed in (("--since", since), ("--until", checkpoints[0]["ts"])):
        assert _verify(swept, None, *narrowed)[0] == 0, narrowed
    manifest["chains"]["main"]["frontier"]["hashes"][0] = "00" * 32
    (swept / "part.jsonl.manifest.json").write_text(json.dumps(manifest))
    _fails(swept, part, "unanchored_start")


def test_a_witness_catches_a_rewrite_signed_with_the_real_key(
    workdir: Path, standin_process: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With a `dir` witness on another path, an operator who rewrites the ledger and the audit
    file and re-signs them with the real key is caught by `verify --witness`."""
    witness = tmp_path_factory.mktemp("witness-host") / "checkpoints"
    write_config(
        workdir,
        standin_process,
        extra=f"audit:\n  checkpoint_interval: 0s\n  witness:\n    - dir: {witness}\n",
    )
    seed(standin_process, [{"id": f"w_{i}"} for i in range(6)])
    for half in ((0, 1, 2), (3, 4, 5)):
        ids = [f"w_{i}" for i in half]
        assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
        assert cli("sweep", cwd=workdir).returncode == 0
    kept = _lines(witness / "main.checkpoints.jsonl")
    assert len(kept) == 2
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir).stdout)
    assert _verify(workdir, None, "--witness", str(witness))[0] == 0
    held = str(witness / "main.checkpoints.jsonl")
    since = json.loads(kept[1])["ts"]
    part = _export(workdir, "part.jsonl", "--since", since, "--since-checkpoint", held)
    assert _verify(workdir, part, "--witness", str(witness))[0] == 0, "a partial export too"
    real = Signer.from_file(workdir / "audit-signing.key", create=False)
    records = ledger_records(workdir / "retention.db")
    records[2]["policy"] = "evals"
    resign(records, real)
    rewrite_ledger(workdir / "retention.db", records, audit_file=workdir / "audit.jsonl")
    _write(workdir / "audit.jsonl", records)
    assert _verify(workdir, workdir / "audit.jsonl")[0] == 0, "alone, the forgery holds"
    _fails(workdir, workdir / "audit.jsonl", "inconsistent", "--witness", str(witness))
    _fails(workdir, None, "inconsistent", "--witness", str(witness))
    receipt = cli("audit", "receipt", "w_0", "-O", "r.json", cwd=workdir)
    assert receipt.returncode == 0, receipt.stderr
    alone = cli("audit", "verify-receipt", "r.json", "--pubkey", "pub.pem", cwd=workdir)
    assert alone.returncode == 0, "a receipt from the re-signed fork holds on its own"
    witnessed = ("audit", "verify-receipt", "r.json", "--pubkey", "pub.pem", "--witness")
    result = cli(*witnessed, str(witness), cwd=workdir)
    assert result.returncode == 1 and "witnessed" in result.stdout, result.stdout


def test_a_key_rotation_verifies_from_the_old_key(swept: Path, standin_process: str) -> None:
    """`audit rotate-key` announces the new key in a checkpoint the old key signs; an export
    verifies pinned to the old key, and later checkpoints carry the new one."""
    old = (swept / "pub.pem").read_text()
    result = cli("audit", "rotate-key", "-o", "json", cwd=swept)
    assert result.returncode == 0, result.stderr
    rotated = json.loads(result.stdout)
    assert (
        rotated["chains"] == ["main"] and (swept / "audit-signing.key").stat().st_mode & 0o77 == 0
    )
    seed(standin_process, [{"id": "after_rotation"}])
    assert cli("record", "after_rotation", "--created-at", LONG_AGO, cwd=swept).returncode == 0
    assert cli("sweep", cwd=swept).returncode == 0
    assert cli("audit", "pubkey", cwd=swept).stdout == rotated["public_key"] != old
    trail = _export(swept)
    last = json.loads(_lines(trail)[-1])
    assert last["details"]["key_fingerprint"] == rotated["new_fingerprint"]
    assert _verify(swept, trail)[0] == 0
    assert cli("audit", "verify", cwd=swept).returncode == 0


def test_a_signing_key_open_to_others_is_refused(swept: Path) -> None:
    """A signing key readable by group or others stops a command with exit 2 and one line."""
    (swept / "audit-signing.key").chmod(0o644)
    result = cli("sweep", cwd=swept)
    assert result.returncode == 2 and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr
    assert (swept / "audit-signing.key").stat().st_mode & 0o777 == 0o644


def test_verify_needs_no_database_driver(swept: Path) -> None:
    """`audit verify FILE` runs with SQLAlchemy made unimportable, and no config file."""
    trail = _export(swept)
    (swept / "retention.yaml").unlink()
    code = (
        "import sys; sys.modules['sqlalchemy'] = None; "
        "from retention.cli.main import main; "
        f"sys.argv = ['retention', 'audit', 'verify', {str(trail)!r}, '--pubkey', 'pub.pem']; "
        "main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=swept, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sound" in result.stdout


def test_auditors_guide_recipes_work(swept: Path) -> None:
    """The guide's ten lines check the chain, and its checkpoint recipe every root, signature
    and the coverage of an export, without retention; a rewritten root fails it."""
    trail = _export(swept)
    guide = (Path(__file__).resolve().parents[2] / "docs" / "auditors-guide.md").read_text()
    chain_check, checkpoint_check = guide.split("```python\n")[1:3]
    for snippet in (chain_check, checkpoint_check):
        code = snippet.split("```", 1)[0].replace('"trail.jsonl"', repr(str(trail)))
        exec(code.replace('"pub.pem"', repr(str(swept / "pub.pem"))), {})  # noqa: S102
    records = [json.loads(x) for x in _lines(trail)]
    last = records[-1]
    last["details"]["root_hash"] = "00" * 32
    rechain(records[-1:])
    _write(trail, records)
    code = checkpoint_check.split("```", 1)[0].replace('"trail.jsonl"', repr(str(trail)))
    with pytest.raises(AssertionError, match="root_mismatch"):
        exec(code.replace('"pub.pem"', repr(str(swept / "pub.pem"))), {})  # noqa: S102


def test_what_a_reader_sees_is_what_the_hash_covers(swept: Path) -> None:
    """A CSV whose visible columns say something else than its records, and a JSON line with
    a duplicated key (a reader may see the first, the hash covers the last), are malformed."""
    cli("audit", "export", "--format", "csv", "-O", "trail.csv", cwd=swept)
    csv_file = swept / "trail.csv"
    lines = _lines(csv_file)
    index = next(i for i, line in enumerate(lines) if "response.deleted" in line)
    lines[index] = lines[index].replace("ev_", "someone_else_", 1)
    csv_file.write_text("\n".join(lines) + "\n")
    (swept / "trail.csv.manifest.json").unlink()
    _fails(swept, csv_file, "malformed")
    trail = _export(swept)
    lines = _lines(trail)
    index = next(i for i, line in enumerate(lines) if "response.deleted" in line)
    lines[index] = '{"response_id":"someone_else",' + lines[index][1:]
    trail.write_text("\n".join(lines) + "\n")
    (swept / "trail.jsonl.manifest.json").unlink()
    _fails(swept, trail, "malformed")


def test_hostile_files_get_one_line_not_a_traceback(swept: Path) -> None:
    """Deeply nested JSON in a trail, a manifest or a checkpoint file, and a manifest of the
    wrong shape, end in a fault or a one-line error, never a traceback."""
    deep = "[" * 100_000 + "]" * 100_000
    trail = _export(swept)
    manifest = swept / "trail.jsonl.manifest.json"
    (swept / "held.jsonl").write_text(next(x for x in _lines(trail) if "checkpoint" in x) + "\n")
    cases = [
        (manifest, deep),
        (manifest, json.dumps({"chains": {"main": {"last_seq": "x", "last_hash": 1}}})),
        (manifest, json.dumps({"chains": {"main": {"consistency": "x"}}})),
        (swept / "held.jsonl", deep),
    ]
    for path, text in cases:
        original = path.read_text() if path.exists() else None
        path.write_text(text)
        result = cli(
            "audit", "verify", str(trail), "--pubkey", "pub.pem",
            "--trusted-checkpoint", "held.jsonl", cwd=swept,
        )  # fmt: skip
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr, result.stderr
        assert "unexpected" not in result.stderr, result.stderr
        if original is not None:
            path.write_text(original)
    trail.write_text(deep + "\n")
    result = cli("audit", "verify", str(trail), "--hash-only", cwd=swept)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_explain_and_report(swept: Path) -> None:
    """`explain` shows the deleted state and its events; `report` counts the 20 deletions."""
    result = cli("explain", IDS[0], cwd=swept)
    assert "deleted" in result.stdout and "response.deleted" in result.stdout
    data = json.loads(cli("report", "-o", "json", cwd=swept).stdout)
    assert data["total"]["deleted"] == 20
    assert data["by_policy"]["default"]["deleted"] == 20
    assert "| all | 20 |" in cli("report", "-o", "markdown", cwd=swept).stdout


def test_signing_key_is_private(swept: Path) -> None:
    """The signing key was created 0600."""
    assert (swept / "audit-signing.key").stat().st_mode & 0o777 == 0o600
