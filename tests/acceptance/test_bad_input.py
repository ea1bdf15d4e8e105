"""Bad input is refused with exit 2, a message naming where, and nothing written or sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import LONG_AGO, auditor_verify, cli, standin_requests, user_env, write_config

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
    return "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)


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
    """12,000 IDs, more than one chunk: each has its own verifiable audit line, while stderr
    (not a terminal) gets a dozen progress lines, not a line per ID."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl([f"ok_{i}" for i in range(12_000)]))
    result = cli("import", "ids.jsonl", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "recorded 12000" in result.stdout
    assert auditor_verify(workdir / "audit.jsonl") == 12_001  # with policy.loaded
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert {line["event"] for line in lines} == {"progress"}, result.stderr[:500]
    assert 1 <= len(lines) <= 11 and lines[-1]["done"] == lines[-1]["total"]


def test_verbose_import_logs_every_event(workdir: Path) -> None:
    """With -v, a one-shot command logs each audit event as well."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "ids.jsonl").write_text(_jsonl([f"ok_{i}" for i in range(300)]))
    result = cli("-v", "import", "ids.jsonl", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count('"response.recorded"') == 300


def test_import_names_the_line_that_is_not_utf8(workdir: Path) -> None:
    """Bytes that are not UTF-8 on stdin's third line: exit 2 naming `<stdin>:3`, no row."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    data = _jsonl(["ok_1", "ok_2"]).encode() + b'{"id": "ok_\xff"}\n' + _jsonl(["ok_4"]).encode()
    result = subprocess.run(
        [sys.executable, "-m", "retention", "import", "-"],
        cwd=workdir,
        env=user_env(),
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"<stdin>:3: not valid UTF-8" in result.stderr
    assert json.loads(cli("ls", "-o", "json", cwd=workdir).stdout) == []


def test_a_stalled_import_pipe_holds_no_lock(workdir: Path) -> None:
    """While `import -` still waits for its input, other commands write to the ledger."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    cli("status", cwd=workdir)  # the ledger exists before the import starts
    importer = subprocess.Popen(
        [sys.executable, "-m", "retention", "import", "-"],
        cwd=workdir,
        env=user_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert importer.stdin is not None
    importer.stdin.write(_jsonl(["piped_1"]).encode())
    importer.stdin.flush()
    try:
        assert cli("record", "meanwhile_1", cwd=workdir).returncode == 0
    finally:
        importer.stdin.write(_jsonl(["piped_2"]).encode())
        importer.stdin.close()
        assert importer.wait(60) == 0
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert sorted(r["response_id"] for r in rows) == ["meanwhile_1", "piped_1", "piped_2"]


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
    data = f"id,created_at,metadata.data_class\nc_1,{LONG_AGO},pii\nc_2,,\n"
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
