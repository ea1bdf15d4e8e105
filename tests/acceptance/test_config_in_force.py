"""What configuration is in force, and that it shows: the daemon logs the file it read and each
variable that overrode it, applies a policies file swapped as Kubernetes swaps a ConfigMap's
files without a signal, and `status` names the ledger it read, without its password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retention.ledger.db import make_engine, upgrade
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import POLICIES, STANDIN_ARGS, cli, write_config

FILE_URL = "postgresql://retention:s3cret-pw@db.example/ret?sslmode=require"
SHORTER = POLICIES.replace("ttl: 30d", "ttl: 20d")
LONGER = POLICIES.replace("ttl: 30d", "ttl: 40d")


class ConfigMapFolder:
    """A folder laid out as the kubelet lays out a ConfigMap volume: `policies.yaml` ->
    `..data/policies.yaml`, `..data` -> `..TIMESTAMP/`, updated by an atomic swap of `..data`."""

    def __init__(self, folder: Path, text: str) -> None:
        self.folder, self.version = folder, 0
        folder.mkdir()
        self.swap(text)
        os.symlink("..data/policies.yaml", folder / "policies.yaml")

    def _write(self, text: str) -> str:
        """A new timestamped folder holding `text`; its name."""
        self.version += 1
        name = f"..2026_01_0{self.version}_00_00_00.00000000{self.version}"
        (self.folder / name).mkdir()
        (self.folder / name / "policies.yaml").write_text(text)
        return name

    def swap(self, text: str) -> None:
        """Write `text` in a new folder, point `..data` at it in one rename, drop the old one."""
        data = self.folder / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        os.symlink(self._write(text), self.folder / "..data_tmp")
        os.replace(self.folder / "..data_tmp", self.folder / "..data")
        if old:
            for child in (self.folder / old).iterdir():
                child.unlink()
            (self.folder / old).rmdir()

    def vanish(self) -> None:
        """`..data` gone for a while (what a reader may meet in the middle of a swap)."""
        (self.folder / "..data").unlink()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A daemon whose retention.yaml names a PostgreSQL URL with a password that
    $RETENTION_DATABASE_URL overrides (a SQLite file), and whose policies file lives in a
    ConfigMap-like folder."""
    workdir = tmp_path_factory.mktemp("in-force")
    standin = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *STANDIN_ARGS],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert standin.stdout is not None
    url = standin.stdout.readline().strip()
    configmap = ConfigMapFolder(workdir / "configmap", POLICIES)
    write_config(
        workdir,
        url,
        extra=f"database_url: {FILE_URL}\npolicies_file: configmap/policies.yaml\n"
        "server:\n  listen: 127.0.0.1:0\n",
    )
    env = {"RETENTION_DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}"}
    daemon = DaemonProcess(workdir, env)
    yield {"workdir": workdir, "daemon": daemon, "configmap": configmap, "env": env}
    daemon.stop()
    standin.terminate()
    standin.wait(10)


def test_run_logs_the_file_it_read_and_the_variable_that_won(running: dict[str, Any]) -> None:
    """`config.loaded` names the file and how it was found; `config.override` says that
    $RETENTION_DATABASE_URL won over `database_url`, whose value is shown without password;
    `status` names the ledger the variable chose."""
    workdir, daemon = running["workdir"], running["daemon"]
    (loaded,) = daemon.events("config.loaded")
    assert loaded["file"] == str(workdir / "retention.yaml")
    assert loaded["source"] == "./retention.yaml"
    assert loaded["ledger"] == f"sqlite:///{workdir / 'ledger.db'}"
    (override,) = daemon.events("config.override")
    assert override["key"] == "database_url"
    assert override["env"] == "RETENTION_DATABASE_URL"
    assert override["winner"] == "env"
    assert override["file_value_ignored"] == "postgresql://retention:***@db.example/ret"
    assert "s3cret-pw" not in json.dumps(daemon.lines) + "".join(daemon.stderr)
    shown = cli("status", "-o", "json", cwd=workdir, env=running["env"])
    assert json.loads(shown.stdout)["ledger"] == f"sqlite:///{workdir / 'ledger.db'}"


def test_a_swapped_configmap_is_applied_without_a_signal(running: dict[str, Any]) -> None:
    """A ConfigMap-style atomic swap of the policies file is applied within 10 s (a
    `policy.loaded` in the trail); `..data` vanishing keeps the policies in force with one log
    line and no `policy.rejected`; the file coming back with new rules is applied too."""
    daemon, configmap = running["daemon"], running["configmap"]
    trail = running["workdir"] / "audit.jsonl"
    assert _wait(lambda: _loaded(trail) == 1, 10), "the policies applied at start"
    configmap.swap(SHORTER)
    started = time.monotonic()
    assert _wait(lambda: _loaded(trail) == 2, 10), "not applied within 10 s"
    took = time.monotonic() - started
    configmap.vanish()
    assert _wait(lambda: daemon.events("policy.file_missing"), 6)
    time.sleep(2.1)  # more polls of the missing file: still one line, nothing refused
    assert len(daemon.events("policy.file_missing")) == 1
    configmap.swap(LONGER)
    assert _wait(lambda: _loaded(trail) == 3, 10), "not applied once back"
    assert not daemon.events("policy.rejected") and "policy.rejected" not in trail.read_text()
    assert took < 10


def _loaded(trail: Path) -> int:
    """How many `policy.loaded` records the audit file holds."""
    if not trail.exists():
        return 0
    return sum(json.loads(line)["event"] == "policy.loaded" for line in trail.open())


def _wait(condition: Any, seconds: float) -> bool:
    """Whether `condition()` turns true within `seconds` (asked every 0.1 s)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return bool(condition())


@pytest.mark.postgres
def test_status_names_the_ledger_without_its_password(pg_url: str, workdir: Path) -> None:
    """`status` (table and JSON) names the PostgreSQL ledger it read with the password from
    `database_password_file` shown as `***`, and the password nowhere."""
    password = workdir / "database-password"
    password.write_text("hunter2-not-shown\n")
    password.chmod(0o600)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    write_config(
        workdir,
        "http://127.0.0.1:9/v1",
        extra=f"database_url: {plain}\ndatabase_password_file: database-password\n",
    )
    engine = make_engine(pg_url)
    upgrade(engine)  # what `retention db upgrade` does
    engine.dispose()
    shown = plain.replace("postgresql://postgres@", "postgresql://postgres:***@")
    table = cli("status", cwd=workdir)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == f"ledger: {shown}"
    data = cli("status", "-o", "json", cwd=workdir)
    assert json.loads(data.stdout)["ledger"] == shown
    assert "hunter2" not in table.stdout + table.stderr + data.stdout + data.stderr
