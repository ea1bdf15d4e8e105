"""Issue 4's acceptance: verified deletions, export and verification, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import LONG_AGO, auditor_verify, cli, seed, standin_requests, write_config

IDS = [f"ev_{i}" for i in range(20)]


@pytest.fixture
def swept(workdir: Path, standin_process: str) -> Path:
    """20 expired IDs swept with verify_after_delete; two sweeps, so two checkpoints."""
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
    return workdir


def _export(workdir: Path, name: str = "trail.jsonl") -> Path:
    """`audit export -o name`."""
    result = cli("audit", "export", "-o", name, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return workdir / name


def test_each_deletion_is_confirmed_by_a_get(swept: Path, standin_process: str) -> None:
    """The stand-in saw a DELETE and then a GET (404) for each of the 20 IDs."""
    seen = standin_requests(standin_process)
    assert sorted(r["path"].rsplit("/", 1)[1] for r in seen if r["method"] == "GET") == sorted(IDS)
    rows = json.loads(cli("ls", "-o", "json", cwd=swept).stdout)
    assert {r["state"] for r in rows} == {"deleted"}


def test_export_verifies_by_recipe_and_by_tool(swept: Path) -> None:
    """The export passes SPEC.md's recipe, `audit verify FILE` and `audit verify` (ledger)."""
    trail = _export(swept)
    assert auditor_verify(trail) > 40
    manifest = json.loads((swept / "trail.jsonl.manifest.json").read_text())
    assert manifest["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(manifest["chains"]["main"]["checkpoints"]) == 2
    result = cli("audit", "verify", str(trail), cwd=swept)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 signed checkpoint(s)" in result.stdout
    assert cli("audit", "verify", cwd=swept).returncode == 0
    deleted = [
        json.loads(line)
        for line in trail.read_text().splitlines()
        if json.loads(line)["event"] == "response.deleted"
    ]
    assert len(deleted) == 20 and all(r["details"]["verified"] for r in deleted)


def test_csv_export_verifies(swept: Path) -> None:
    """The CSV export carries each exact record and verifies too."""
    cli("audit", "export", "--format", "csv", "-o", "trail.csv", cwd=swept)
    assert cli("audit", "verify", "trail.csv", cwd=swept).returncode == 0


def _lines(path: Path) -> list[str]:
    """The file's lines."""
    return path.read_text().splitlines()


def _tamper(path: Path, lines: list[str]) -> None:
    """Write tampered lines back."""
    path.write_text("".join(line + "\n" for line in lines))


def _rehash(record: dict) -> str:  # type: ignore[type-arg]
    """A record re-hashed as a forger would, as a line."""
    import hashlib

    body = {k: v for k, v in record.items() if k != "hash"}
    record["hash"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _verify_fails(workdir: Path, trail: Path, expected: str, *extra: str) -> None:
    """`audit verify` exits 1 and names the kind of fault."""
    result = cli("audit", "verify", str(trail), "-o", "json", *extra, cwd=workdir)
    assert result.returncode == 1, result.stdout
    fault = json.loads(result.stdout)["fault"]
    assert fault["kind"] == expected, fault


def test_a_field_edited(swept: Path) -> None:
    """An edited field is `modified` at its seq."""
    trail = _export(swept)
    lines = _lines(trail)
    lines[7] = lines[7].replace('"http_status":null', '"http_status":204', 1)
    lines[7] = lines[7].replace('"policy":"default"', '"policy":"pii"', 1)
    _tamper(trail, lines)
    _verify_fails(swept, trail, "modified")


def test_a_line_deleted(swept: Path) -> None:
    """A deleted line is `missing`."""
    trail = _export(swept)
    lines = _lines(trail)
    del lines[10]
    _tamper(trail, lines)
    _verify_fails(swept, trail, "missing")


def test_two_lines_swapped(swept: Path) -> None:
    """Two swapped lines are `reordered`."""
    trail = _export(swept)
    lines = _lines(trail)
    lines[10], lines[11] = lines[11], lines[10]
    _tamper(trail, lines)
    _verify_fails(swept, trail, "reordered")


def test_a_record_edited_and_rehashed(swept: Path) -> None:
    """Re-hashing an edited record breaks the next link."""
    trail = _export(swept)
    lines = _lines(trail)
    record = json.loads(lines[12])
    record["response_id"] = "someone_else"
    lines[12] = _rehash(record)
    _tamper(trail, lines)
    _verify_fails(swept, trail, "broken_link")


def test_tail_cut_after_a_checkpoint(swept: Path) -> None:
    """Cutting everything after the first checkpoint is `truncated` against the manifest."""
    trail = _export(swept)
    lines = _lines(trail)
    first_cp = next(i for i, line in enumerate(lines) if '"audit.checkpoint"' in line)
    (swept / "last-checkpoint.jsonl").write_text(
        next(line for line in reversed(lines) if '"audit.checkpoint"' in line) + "\n"
    )
    _tamper(trail, lines[: first_cp + 1])
    _verify_fails(swept, trail, "truncated")
    (swept / "trail.jsonl.manifest.json").unlink()
    assert cli("audit", "verify", str(trail), cwd=swept).returncode == 0, (
        "without manifest or trusted checkpoint a clean cut is undetectable"
    )
    _verify_fails(swept, trail, "truncated", "--trusted-checkpoint", "last-checkpoint.jsonl")


def test_a_checkpoint_signature_altered(swept: Path) -> None:
    """An altered signature (record re-hashed, chain re-linked) does not verify."""
    trail = _export(swept)
    lines = _lines(trail)
    index = next(i for i, line in enumerate(lines) if '"audit.checkpoint"' in line)
    record = json.loads(lines[index])
    sig = record["details"]["signature"]
    record["details"]["signature"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    lines[index] = _rehash(record)
    for i in range(index + 1, len(lines)):
        follower = json.loads(lines[i])
        follower["prev_hash"] = json.loads(lines[i - 1])["hash"]
        if follower["event"] == "audit.checkpoint":
            follower["details"]["covers_hash"] = follower["prev_hash"]
        lines[i] = _rehash(follower)
    _tamper(trail, lines)
    (swept / "trail.jsonl.manifest.json").unlink()
    cli("audit", "pubkey", cwd=swept)
    (swept / "pub.pem").write_text(cli("audit", "pubkey", cwd=swept).stdout)
    _verify_fails(swept, trail, "forged_signature", "--pubkey", "pub.pem")


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


def test_auditors_guide_recipes_work(swept: Path) -> None:
    """The guide's ten lines and its checkpoint recipe verify an export without retention."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    trail = _export(swept)
    guide = (Path(__file__).resolve().parents[2] / "docs" / "auditors-guide.md").read_text()
    snippet = guide.split("```python\n", 1)[1].split("```", 1)[0]
    exec(snippet.replace('"trail.jsonl"', repr(str(trail))), {})  # noqa: S102
    manifest = json.loads((swept / "trail.jsonl.manifest.json").read_text())
    public = load_pem_public_key(manifest["public_key"].encode())
    checked = 0
    for line in _lines(trail):
        record = json.loads(line)
        if record["event"] != "audit.checkpoint":
            continue
        d = record["details"]
        message = {
            "chain": record["chain"],
            "ts": record["ts"],
            **{
                k: d[k]
                for k in (
                    "covers_hash",
                    "covers_seq",
                    "interval_s",
                    "key_fingerprint",
                    "prev_signature",
                )
            },
        }
        public.verify(
            base64.b64decode(d["signature"]),
            json.dumps(  # type: ignore[union-attr]
                message, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode(),
        )
        assert d["covers_hash"] == record["prev_hash"]
        checked += 1
    assert checked == 2
    assert hashlib.sha256(trail.read_bytes()).hexdigest() == manifest["sha256"]
