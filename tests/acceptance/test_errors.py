"""Errors a user can cause end in one line naming what and where, with a hint, and the
documented exit code: never a traceback, never the catch-all's "unexpected"."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli, user_env, write_config

URL = "http://127.0.0.1:9/v1"


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert the exit code and a single line on stderr with no traceback; return that line."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert lines[0].startswith("retention: error: ")
    return lines[0]


def _without_privilege() -> list[str]:
    """The prefix that runs a command with file modes enforced: as root, in a new user
    namespace (root there holds no capability over our files, so a folder's mode binds it)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--user", "true"]).returncode:
        pytest.skip("running as root without `unshare --user`: file modes do not bind root")
    return ["unshare", "--user"]


@pytest.fixture
def shared(workdir: Path) -> Iterator[Path]:
    """A folder whose modes bind the commands `as_user` runs (made writable again after)."""
    yield workdir
    for path in (workdir, *workdir.iterdir()):
        if path.is_dir():
            path.chmod(0o755)


def as_user(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m retention ARGS` with file modes enforced, as an unprivileged user meets them."""
    return subprocess.run(
        [*_without_privilege(), sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _config(folder: Path, extra: str = "") -> None:
    """A config in `folder`."""
    write_config(folder, URL, extra=extra)


def test_ledger_in_a_read_only_folder(shared: Path) -> None:
    """Even `status` names the ledger and the folder and says to make it writable, exit 1."""
    _config(shared)
    assert as_user("record", "resp_1", cwd=shared).returncode == 0
    shared.chmod(0o555)
    for command in (["status"], ["record", "resp_2"]):
        line = one_line(as_user(*command, cwd=shared), 1)
        assert f"ledger {shared / 'retention.db'}" in line
        assert f"the folder {shared} is read-only" in line and "write access" in line


def test_new_ledger_in_a_read_only_folder(shared: Path) -> None:
    """A ledger that cannot even be created says so, exit 1."""
    _config(shared)
    shared.chmod(0o555)
    line = one_line(as_user("status", cwd=shared), 1)
    assert f"the folder {shared} is read-only" in line


def test_audit_file_permission_denied(shared: Path) -> None:
    """An audit file that cannot be opened stops the write before anything is committed."""
    trail = shared / "trail"
    trail.mkdir(mode=0o555)
    _config(shared, extra=f"audit:\n  file: {trail / 'audit.jsonl'}\n")
    line = one_line(as_user("record", "resp_1", cwd=shared), 1)
    assert f"audit file {trail / 'audit.jsonl'}: cannot open for appending" in line
    assert "Permission denied" in line and "audit.file" in line
    trail.chmod(0o755)
    assert "resp_1" not in cli("ls", cwd=shared).stdout, "nothing was committed"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_audit_file_on_a_full_disk(workdir: Path) -> None:
    """A full disk under the audit file: the record is committed, an error line per commit
    (the policies', the record's) says the file lags, exit 0; the file catches up with every
    record once it can be written."""
    write_config(workdir, URL, extra="audit:\n  file: /dev/full\n")
    quiet = {"RETENTION_LOG_LEVEL": "warning"}  # what a terminal shows
    result = cli("record", "resp_1", cwd=workdir, env=quiet)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and "Traceback" not in result.stderr
    for line in lines:
        assert "audit.file_write_failed" in line and "No space left on device" in line
        assert "/dev/full" in line and "catches up" in line
    write_config(workdir, URL)
    assert cli("record", "resp_2", cwd=workdir).returncode == 0
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    assert {json.loads(line)["response_id"] for line in lines} >= {"resp_1", "resp_2"}
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))


def test_database_url_at_a_file_that_is_not_a_database(workdir: Path) -> None:
    """The file is named, with what to point database_url at, exit 1."""
    (workdir / "notes.txt").write_text("not a ledger\n" * 100)
    write_config(workdir, URL)
    env = {"RETENTION_DATABASE_URL": f"sqlite:///{workdir / 'notes.txt'}"}
    line = one_line(cli("status", cwd=workdir, env=env), 1)
    assert f"ledger {workdir / 'notes.txt'}: not an SQLite database" in line
    assert "database_url" in line


@pytest.mark.parametrize("kind", ["folder", "named pipe"])
def test_database_url_at_something_that_is_no_file(workdir: Path, kind: str) -> None:
    """A folder or a named pipe where the SQLite file should be: a configuration error naming
    it and `database_url`, exit 2 (a pipe used to be opened, and fail on a seek)."""
    spot = workdir / "spot"
    spot.mkdir() if kind == "folder" else os.mkfifo(spot)
    write_config(workdir, URL)
    env = {"RETENTION_DATABASE_URL": f"sqlite:///{spot}"}
    line = one_line(cli("status", cwd=workdir, env=env), 2)
    assert f"ledger {spot} is not a regular file" in line and "database_url" in line


def test_ledger_folder_missing(workdir: Path) -> None:
    """A database_url in a folder that does not exist names the folder, exit 1."""
    write_config(workdir, URL)
    env = {"RETENTION_DATABASE_URL": f"sqlite:///{workdir / 'gone' / 'r.db'}"}
    line = one_line(cli("status", cwd=workdir, env=env), 1)
    assert f"the folder {workdir / 'gone'} does not exist" in line


@pytest.mark.postgres
def test_missing_postgres_database(pg_url: str, workdir: Path) -> None:
    """`db upgrade` and `status` against a database that does not exist say so and how to
    create it, exit 1."""
    write_config(workdir, URL)
    server = pg_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://")
    env = {"RETENTION_DATABASE_URL": f"{server}/nosuchdb_xyz"}
    for command in (["db", "upgrade"], ["status"]):
        line = one_line(cli(*command, cwd=workdir, env=env), 1)
        assert 'database "nosuchdb_xyz" does not exist' in line
        assert "createdb" in line and "nosuchdb_xyz" in line


def test_postgres_not_listening(workdir: Path) -> None:
    """A PostgreSQL URL where nothing listens names host and port, exit 1."""
    write_config(workdir, URL)
    env = {"RETENTION_DATABASE_URL": "postgresql://u:secret@127.0.0.1:9/retention"}
    line = one_line(cli("status", cwd=workdir, env=env), 1)
    assert "127.0.0.1:9: connection refused" in line
    assert "secret" not in line, "the password never reaches a message"


def test_second_sweep_on_one_sqlite_ledger(workdir: Path) -> None:
    """While another process holds the sweeper lock, `sweep` refuses naming its pid, exit 1."""
    write_config(workdir, URL)
    assert cli("record", "resp_1", cwd=workdir).returncode == 0
    fd = os.open(workdir / "retention.db.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242", 0)
        line = one_line(cli("sweep", cwd=workdir), 1)
    finally:
        os.close(fd)
    assert "another retention process (pid 4242) is sweeping" in line
    assert str(workdir / "retention.db") in line and "PostgreSQL" in line


def test_bad_log_level(workdir: Path) -> None:
    """An unknown $RETENTION_LOG_LEVEL is a usage error naming the variable, exit 2."""
    write_config(workdir, URL)
    line = one_line(cli("status", cwd=workdir, env={"RETENTION_LOG_LEVEL": "loud"}), 2)
    assert "$RETENTION_LOG_LEVEL" in line and "'loud'" in line
