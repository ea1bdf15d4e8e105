"""Bad input is refused with exit 2, a message naming where, and nothing written or sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import auditor_verify, cli, standin_requests, write_config

HOSTILE = ["../x", "a/b", "r?x=1", "r 1", "résumé", "%2e%2e", "resp_1\n", "", "-rf"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_id_is_refused_before_any_request(
    workdir: Path, standin_process: str, bad: str
) -> None:
    """`record` of a hostile ID exits 2, names it, records nothing and sends nothing."""
    write_config(workdir, standin_process)
    result = cli("record", "--", bad, cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "invalid response ID" in result.stderr
    assert cli("sweep", cwd=workdir).returncode == 0
    assert standin_requests(standin_process) == []
    assert json.loads(cli("ls", "-o", "json", cwd=workdir).stdout) == []


def _jsonl(ids: list[str]) -> str:
    """Import lines for `ids`."""
    return "".join(json.dumps({"id": i, "created_at": "2026-01-01T00:00:00Z"}) + "\n" for i in ids)


def test_import_with_bad_third_line_writes_nothing(workdir: Path) -> None:
    """An import whose third line is invalid exits 2 naming line 3 and writes no row."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl(["ok_1", "ok_2", "bad/3", "ok_4"]))
    result = cli("import", "ids.jsonl", cwd=workdir)
    assert result.returncode == 2
    assert "ids.jsonl:3:" in result.stderr
    assert json.loads(cli("ls", "-o", "json", cwd=workdir).stdout) == []


def test_import_with_a_bad_line_after_many_chunks_writes_nothing(workdir: Path) -> None:
    """A bad last line, after several chunks were already written in the transaction, rolls
    every one of them back: no row, and no line in the audit file."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl([f"ok_{i}" for i in range(12_000)] + ["bad/x"]))
    result = cli("import", "ids.jsonl", cwd=workdir)
    assert result.returncode == 2
    assert "ids.jsonl:12001:" in result.stderr
    status = json.loads(cli("status", "-o", "json", cwd=workdir).stdout)
    assert status["total"] == 0
    audit = (workdir / "audit.jsonl").read_text() if (workdir / "audit.jsonl").exists() else ""
    assert "response.recorded" not in audit


def test_large_import_writes_every_event_and_logs_a_summary(workdir: Path) -> None:
    """12,000 IDs: each has its own verifiable audit line, while the log holds one summary."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl([f"ok_{i}" for i in range(12_000)]))
    result = cli("import", "ids.jsonl", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "recorded 12000" in result.stdout
    assert auditor_verify(workdir / "audit.jsonl") == 12_001  # with policy.loaded
    assert result.stderr.count("response.recorded") == 1  # in the summary's event counts
    assert "audit.published" in result.stderr


def test_import_skip_invalid_writes_the_valid_rows(workdir: Path) -> None:
    """With --skip-invalid the valid rows are tracked and the reject is reported by line."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl(["ok_1", "ok_2", "bad/3", "ok_4"]))
    result = cli("import", "ids.jsonl", "--skip-invalid", "-o", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "ids.jsonl:3:" in result.stderr
    assert json.loads(result.stdout) == {"accepted": 3, "duplicates": 0, "rejected": 1}
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert sorted(r["response_id"] for r in rows) == ["ok_1", "ok_2", "ok_4"]


def test_import_csv_from_stdin(workdir: Path) -> None:
    """CSV on stdin, with metadata columns, is imported under the policy it selects."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    data = "id,created_at,metadata.data_class\nc_1,2026-01-01T00:00:00Z,pii\nc_2,,\n"
    result = cli("import", "-", "--format", "csv", cwd=workdir, stdin=data)
    assert result.returncode == 0, result.stderr
    rows = {r["response_id"]: r for r in json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)}
    assert rows["c_1"]["policy"] == "pii"
    assert rows["c_2"]["deadline_basis"] == "first_seen"


def test_policies_check_names_the_line_of_a_bad_ttl(workdir: Path) -> None:
    """`ttl: 3 parsecs` on line 7 exits 2 with an error naming line 7 and the key."""
    bad = workdir / "bad.yaml"
    bad.write_text(
        "version: 1\ndefault:\n  ttl: 30d\npolicies:\n  - name: pii\n"
        "    match: {metadata: {data_class: pii}}\n    ttl: 3 parsecs\n"
    )
    result = cli("policies", "check", str(bad), cwd=workdir)
    assert result.returncode == 2
    assert f"{bad}:7: policies[0].ttl:" in result.stderr


def test_bad_config_names_file_line_and_key(workdir: Path) -> None:
    """A typo in retention.yaml is refused with file:line: key, exit 2."""
    write_config(workdir, "http://127.0.0.1:9/v1", extra="sweep:\n  max_attempt: 3\n")
    result = cli("status", cwd=workdir)
    assert result.returncode == 2
    assert "retention.yaml:9: sweep.max_attempt: unknown key" in result.stderr


@pytest.mark.parametrize("when", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-25T08:00:00"])
def test_bad_created_at_is_refused(workdir: Path, when: str) -> None:
    """A time that is not RFC 3339 with a zone, nor unix seconds, exits 2."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    result = cli("record", "resp_1", "--created-at", when, cwd=workdir)
    assert result.returncode == 2
    assert "--created-at" in result.stderr
