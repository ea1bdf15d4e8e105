"""`retention report` as an auditor reads it: IDs recorded after their deadline are late on
arrival, not late; dates work as --since/--until."""

from __future__ import annotations

import json
from pathlib import Path

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
