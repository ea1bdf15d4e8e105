"""The command line as users meet it: help everywhere, -c anywhere, JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import LONG_AGO, ago, cli, write_config

COMMANDS = [
    [],
    ["record"],
    ["import"],
    ["ls"],
    ["status"],
    ["explain"],
    ["sweep"],
    ["policies"],
    ["policies", "check"],
    ["policies", "diff"],
    ["db"],
    ["db", "upgrade"],
    ["run"],
    ["demo"],
    ["discover"],
    ["report"],
    ["audit"],
    ["audit", "export"],
    ["audit", "verify"],
    ["audit", "pubkey"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "retention")
def test_every_command_has_help(workdir: Path, command: list[str]) -> None:
    """`--help` works on every command, with no configuration present."""
    result = cli(*command, "--help", cwd=workdir)
    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_config_before_or_after_the_command(workdir: Path) -> None:
    """`-c FILE` is accepted before and after the command name, and via RETENTION_CONFIG."""
    sub = workdir / "etc"
    sub.mkdir()
    config = write_config(sub, "http://127.0.0.1:9/v1")
    assert cli("-c", str(config), "record", "resp_a", cwd=workdir).returncode == 0
    assert cli("record", "resp_b", "-c", str(config), cwd=workdir).returncode == 0
    env = {"RETENTION_CONFIG": str(config)}
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir, env=env).stdout)
    assert sorted(r["response_id"] for r in rows) == ["resp_a", "resp_b"]
    assert (sub / "retention.db").exists(), "a relative SQLite path counts from the config"


def test_ls_filters_by_state_as_written(workdir: Path) -> None:
    """`ls --state pending` takes the states as users write them, and lists only those."""
    config = write_config(workdir, "http://127.0.0.1:9/v1")
    assert cli("-c", str(config), "record", "resp_a", cwd=workdir).returncode == 0
    pending = cli("-c", str(config), "ls", "--state", "pending", "-o", "json", cwd=workdir)
    assert pending.returncode == 0, pending.stderr
    assert [r["response_id"] for r in json.loads(pending.stdout)] == ["resp_a"]
    failed = cli("-c", str(config), "ls", "--state", "failed", "-o", "json", cwd=workdir)
    assert json.loads(failed.stdout) == []
    assert cli("-c", str(config), "ls", "--state", "PENDING", cwd=workdir).returncode == 2


def test_missing_config_is_a_usage_error(workdir: Path) -> None:
    """Without any configuration the command exits 2 and says how to give one."""
    result = cli("status", cwd=workdir)
    assert result.returncode == 2
    assert "RETENTION_CONFIG" in result.stderr


def test_database_url_from_the_environment(workdir: Path) -> None:
    """RETENTION_DATABASE_URL overrides database_url."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    env = {"RETENTION_DATABASE_URL": f"sqlite:///{workdir / 'other.db'}"}
    assert cli("record", "resp_a", cwd=workdir, env=env).returncode == 0
    assert (workdir / "other.db").exists()
    assert not (workdir / "retention.db").exists()


def test_status_json(workdir: Path) -> None:
    """`status -o json` gives counts for every state."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    cli("record", "resp_a", "resp_b", cwd=workdir)
    data = json.loads(cli("status", "-o", "json", cwd=workdir).stdout)
    assert data["states"] == {"pending": 2, "held": 0, "deleted": 0, "absent": 0, "failed": 0}


def test_explain_shows_policy_and_events(workdir: Path) -> None:
    """`explain` names the matching policy, the deadline and the audit events."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    cli("record", "resp_a", "--meta", "data_class=pii", cwd=workdir)
    result = cli("explain", "resp_a", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "pii" in result.stdout and "response.recorded" in result.stdout


def test_shipped_examples_work_as_they_are(workdir: Path) -> None:
    """The commented examples in config/ validate and run `record` and `sweep --dry-run`."""
    config_dir = Path(__file__).resolve().parents[2] / "config"
    for name in ("retention.yaml", "policies.yaml"):
        (workdir / name).write_text((config_dir / name).read_text())
    assert cli("policies", "check", cwd=workdir).returncode == 0
    assert cli("record", "resp_x", "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    result = cli("sweep", "--dry-run", cwd=workdir)
    assert result.returncode == 0 and "resp_x" in result.stdout


def test_policies_diff_counts_what_a_change_makes_due(workdir: Path) -> None:
    """`policies diff OLD NEW` counts the records a shorter TTL makes due now, per policy."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    cli("record", "d1", "d2", "--created-at", ago(days=10), cwd=workdir)
    cli(
        "record",
        "d3",
        "--created-at",
        ago(days=10),
        "--meta",
        "data_class=pii",
        cwd=workdir,
    )
    (workdir / "new.yaml").write_text("version: 1\ndefault: {ttl: 7d}\n")
    result = cli("policies", "diff", "policies.yaml", "new.yaml", "-o", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["newly_due"] == {"default": 2} and data["records"] == 3
