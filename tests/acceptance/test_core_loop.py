"""Issue 2's acceptance: six IDs, one sweep, exactly the four due ones deleted, and proof."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import ACCOUNT, auditor_verify, cli, seed, standin_requests, write_config

DAY = 86400


@pytest.fixture
def six(workdir: Path, standin_process: str) -> tuple[Path, str]:
    """The six responses of the acceptance list, recorded with --created-at."""
    url = standin_process
    write_config(workdir, url)
    seed(url, [{"id": i} for i in ("resp_old", "resp_pii", "resp_eval", "resp_fresh", "resp_held")])
    t = int(time.time())
    for args in (
        ["resp_old", "--created-at", str(t - 31 * DAY)],
        ["resp_pii", "--meta", "data_class=pii", "--created-at", str(t - 2 * DAY)],
        [
            "resp_eval",
            "--model",
            "accounts/fireworks/models/eval-7b",
            "--created-at",
            str(t - 8 * DAY),
        ],
        ["resp_fresh", "--meta", "data_class=pii", "--created-at", str(t - 3600)],
        ["resp_held", "--created-at", str(t - 40 * DAY)],
        ["resp_gone", "--created-at", str(t - 31 * DAY)],
    ):
        result = cli("record", *args, cwd=workdir)
        assert result.returncode == 0, result.stderr
    return workdir, url


def test_dry_run_lists_the_four_due_ids_and_sends_nothing(six: tuple[Path, str]) -> None:
    """`sweep --dry-run` names the four due IDs with their policies and sends no request."""
    workdir, url = six
    result = cli("sweep", "--dry-run", "--output", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    planned = {p["response_id"]: p["policy"] for p in json.loads(result.stdout)["would_delete"]}
    assert planned == {
        "resp_old": "default",
        "resp_pii": "pii",
        "resp_eval": "evals",
        "resp_gone": "default",
    }
    assert not [r for r in standin_requests(url) if r["method"] == "DELETE"]


def test_sweep_deletes_exactly_the_four_due(six: tuple[Path, str]) -> None:
    """One sweep sends four DELETEs with the account header; `ls` shows each state."""
    workdir, url = six
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 0, result.stderr
    deletes = [r for r in standin_requests(url) if r["method"] == "DELETE"]
    assert sorted(r["path"].rsplit("/", 1)[1] for r in deletes) == [
        "resp_eval",
        "resp_gone",
        "resp_old",
        "resp_pii",
    ]
    assert all(r["account"] == ACCOUNT for r in deletes)  # Fireworks' header, where it is one
    listing = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert {r["response_id"]: r["state"] for r in listing} == {
        "resp_old": "deleted",
        "resp_pii": "deleted",
        "resp_eval": "deleted",
        "resp_gone": "absent",
        "resp_fresh": "pending",
        "resp_held": "held",
    }


def test_second_sweep_sends_nothing(six: tuple[Path, str]) -> None:
    """After a sweep, the next one finds nothing due and sends no request."""
    workdir, url = six
    assert cli("sweep", cwd=workdir).returncode == 0
    before = len(standin_requests(url))
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert len(standin_requests(url)) == before


def test_audit_file_verifies_and_proves_each_deletion(six: tuple[Path, str]) -> None:
    """The audit file passes the recipe of docs/evidence.md; deletions carry policy and status."""
    workdir, _ = six
    assert cli("sweep", cwd=workdir).returncode == 0
    audit = workdir / "audit.jsonl"
    assert auditor_verify(audit) > 10
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    deleted = {r["response_id"]: r for r in records if r["event"] == "response.deleted"}
    assert set(deleted) == {"resp_old", "resp_pii", "resp_eval"}
    assert all(r["http_status"] == 200 and r["policy"] for r in deleted.values())
    assert deleted["resp_pii"]["policy"] == "pii"
    absent = [r for r in records if r["event"] == "response.absent"]
    assert [(r["response_id"], r["http_status"]) for r in absent] == [("resp_gone", 404)]


def test_state_files_are_private(six: tuple[Path, str]) -> None:
    """The ledger and the audit file are created 0600."""
    workdir, _ = six
    for name in ("retention.db", "audit.jsonl"):
        assert (workdir / name).stat().st_mode & 0o777 == 0o600, name
