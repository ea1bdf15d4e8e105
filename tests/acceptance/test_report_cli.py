"""`retention report` as an auditor reads it: IDs recorded after their deadline are late on
arrival, not late; dates work as --since/--until; erasure requests are counted with their time
to completion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retention.config.settings import load_settings
from retention.services.erasure import checked_request, request_erasure
from retention.services.open_ledger import open_ledger
from tests.helpers import LONG_AGO, ago, cli, seed, write_config

IDS = [f"resp_rep{i}" for i in range(3)]


def test_report_separates_late_on_arrival(workdir: Path, standin_process: str) -> None:
    """IDs created long ago and deleted at the first sweep are late on arrival with a short
    lag; --since a date includes them, --until a date before them excludes them."""
    write_config(workdir, standin_process)
    seed(standin_process, [{"id": i} for i in IDS])
    assert cli("record", *IDS, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    assert cli("sweep", cwd=workdir).returncode == 0
    result = cli("report", "-o", "json", "--since", ago(days=1)[:10], cwd=workdir)
    assert result.returncode == 0, result.stderr
    total = json.loads(result.stdout)["total"]
    assert (total["deleted"], total["late_on_arrival"], total["late"]) == (3, 3, 0)
    assert 0 <= total["lag_max_s"] < 600, "the lag counts from the first sighting"
    before = json.loads(cli("report", "-o", "json", "--until", LONG_AGO[:10], cwd=workdir).stdout)
    assert before["total"]["deleted"] == 0 and before["until"].endswith("T00:00:00.000000Z")
    table = cli("report", cwd=workdir).stdout
    assert "LATE_ON_ARRIVAL" in table and "late on arrival" in table


def _erase(workdir: Path, user_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data subject's erasure request, made on the ledger of `workdir`'s config."""
    monkeypatch.setenv("FW_TEST_KEY", "test-key")
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    settings = load_settings(workdir / "retention.yaml")
    ledger = open_ledger(settings)
    try:
        request = checked_request({"user_id": user_id}, "asked by mail", "T-1", settings)
        request_erasure(ledger, settings, request)
    finally:
        ledger.close()


def test_report_counts_erasures(
    workdir: Path, standin_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request completed by the next sweep and one still open: counted in JSON with
    seconds, shown as a table of their own; a window before them counts none."""
    write_config(workdir, standin_process)
    seed(standin_process, [{"id": "resp_er_a"}, {"id": "resp_er_b"}])
    for rid, who in (("resp_er_a", "alice"), ("resp_er_b", "bob")):
        recorded = cli("record", rid, "--meta", f"user_id={who}", cwd=workdir)
        assert recorded.returncode == 0, recorded.stderr
    _erase(workdir, "alice", monkeypatch)
    assert cli("sweep", cwd=workdir).returncode == 0
    _erase(workdir, "bob", monkeypatch)
    result = cli("report", "-o", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    erasures = json.loads(result.stdout)["erasures"]
    counts = {k: erasures[k] for k in ("requested", "completed", "open", "overdue")}
    assert counts == {"requested": 2, "completed": 1, "open": 1, "overdue": 0}
    assert 0 <= erasures["completion_p50_s"] == erasures["completion_max_s"] < 120
    table = cli("report", cwd=workdir).stdout
    assert "erasure requests made from the beginning" in table and "COMPLETION_P99" in table
    markdown = cli("report", "-o", "markdown", cwd=workdir).stdout
    assert "## Erasure requests" in markdown and "| 2 | 1 | 1 | 0 |" in markdown
    before = cli("report", "-o", "json", "--until", LONG_AGO[:10], cwd=workdir).stdout
    assert json.loads(before)["erasures"]["requested"] == 0
