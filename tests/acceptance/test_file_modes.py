"""File modes and keys at start-up, as an operator meets them: a state folder left 0644 is made
private with one warning a file; key and token files open to others, and keys that cannot be
header values, stop `sweep`, `run` and `doctor` before any request, naming the key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import LONG_AGO, cli, user_env, write_config

URL = "http://127.0.0.1:9/v1"  # nothing listens: a command that got past its keys would fail


def _mode(path: Path) -> int:
    """The permission bits of `path`."""
    return path.stat().st_mode & 0o777


def _warnings(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The `file.made_private` log lines on stderr: path to old mode."""
    found = {}
    for line in result.stderr.splitlines():
        if '"file.made_private"' in line:
            record = json.loads(line)
            assert record["level"] == "warning" and record["mode"] == "0600", record
            found[record["path"]] = record["old_mode"]
    return found


def test_a_state_folder_left_0644_is_made_private_with_one_warning_a_file(workdir: Path) -> None:
    """Ledger, its -wal and -shm (held open), sweeper lock and audit file found 0644: the next
    command makes each 0600 and names each once with its old mode; the one after says
    nothing, and a WAL SQLite makes afresh copies 0600."""
    write_config(workdir, URL)
    assert cli("record", "m1", cwd=workdir).returncode == 0
    db, trail = workdir / "retention.db", workdir / "audit.jsonl"
    lock = workdir / "retention.db.lock"
    lock.touch()
    for path in (db, trail, lock):
        path.chmod(0o644)
    holder = sqlite3.connect(db)  # another reader keeps the -wal and -shm, made 0644 from the db
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("SELECT count(*) FROM records").fetchall()
    wal, shm = workdir / "retention.db-wal", workdir / "retention.db-shm"
    try:
        assert _mode(wal) == 0o644 and _mode(shm) == 0o644
        first = cli("record", "m2", cwd=workdir)
        second = cli("record", "m3", cwd=workdir)
        named = {str(p): "0644" for p in (db, wal, shm, lock, trail)}
        assert all(_mode(Path(p)) == 0o600 for p in named)
    finally:
        holder.close()
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert _warnings(first) == named, first.stderr
    assert _warnings(second) == {}
    fresh = sqlite3.connect(db)
    fresh.execute("PRAGMA journal_mode=WAL")
    fresh.execute("INSERT INTO records (provider, response_id) SELECT 'x', 'y' WHERE 0")
    fresh.commit()
    try:
        assert _mode(wal) == 0o600
    finally:
        fresh.close()


def _key_file_config(workdir: Path, key: bytes, mode: int, *, token: bytes | None = None) -> None:
    """A config reading the API key (and the ingest token) from files of `mode`."""
    config = write_config(workdir, URL, extra="server:\n  listen: 127.0.0.1:0\n")
    text = config.read_text().replace("api_key_env: FW_TEST_KEY", "api_key_file: key")
    if token is not None:
        text = text.replace("server:\n", "server:\n  ingest_token_file: token\n")
        (workdir / "token").write_bytes(token)
        (workdir / "token").chmod(mode)
    config.write_text(text)
    (workdir / "key").write_bytes(key)
    (workdir / "key").chmod(mode)


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 with one line on stderr, no traceback: that line."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("mode", [0o644, 0o602])
def test_key_file_open_to_others_stops_sweep_run_and_fails_doctor(workdir: Path, mode: int) -> None:
    """A key file readable or writable by group or others: `sweep` and `run` exit 2 in one
    line naming the key, the file, its mode and `chmod 600 FILE`; `doctor` fails the key
    check with the same words; nothing is sent and the file keeps its mode."""
    _key_file_config(workdir, b"sk-file-mode-0001\n", mode)
    assert cli("record", "k1", "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    expected = f"mode {mode:04o}); run `chmod 600 {workdir / 'key'}`"
    for command in ("sweep", "run"):
        line = _refused(cli(command, cwd=workdir))
        assert "providers.fireworks.api_key_file" in line and expected in line, line
    doctor = cli("doctor", "-o", "json", cwd=workdir)
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1 and checks["key fireworks"]["result"] == "FAIL"
    assert expected in checks["key fireworks"]["detail"]
    assert _mode(workdir / "key") == mode


def test_world_writable_ingest_token_file_stops_the_daemon(workdir: Path) -> None:
    """An ingest token file any local user could rewrite: `run` exits 2 naming it."""
    _key_file_config(workdir, b"sk-file-mode-0001\n", 0o600, token=b"tok-0001\n")
    (workdir / "token").chmod(0o666)
    line = _refused(cli("run", cwd=workdir))
    assert "server.ingest_token_file" in line and "mode 0666" in line and "chmod 600" in line


@pytest.mark.parametrize("key", ["sk-caf\u00e9-0001", "\ufeffsk-bom-0001"])
def test_a_non_ascii_key_stops_sweep_and_run_and_fails_doctor(workdir: Path, key: str) -> None:
    """A key that cannot be a header value, from the environment: `sweep` and `run` exit 2
    naming providers.fireworks, never the value; `doctor` fails its key check and skips the
    probe. Before, `sweep` raised a raw UnicodeEncodeError."""
    write_config(workdir, URL)
    assert cli("record", "n1", "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    env = {"FW_TEST_KEY": key}
    for command in ("sweep", "run"):
        line = _refused(cli(command, cwd=workdir, env=env))
        assert "providers.fireworks: the API key holds a character that is not ASCII" in line
        assert "0001" not in line and "UnicodeEncodeError" not in line
    doctor = cli("doctor", "-o", "json", cwd=workdir, env=env)
    checks = {c["check"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1 and "not ASCII" in checks["key fireworks"]["detail"]
    assert checks["probe fireworks"]["result"] == "SKIP"


def _make_not_a_file(path: Path, kind: str) -> None:
    """Put something that is not a regular file at `path`: a named pipe, a folder or a link
    to a device."""
    if kind == "named pipe":
        os.mkfifo(path, 0o600)
    elif kind == "folder":
        path.mkdir(mode=0o700)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["named pipe", "folder", "device"])
def test_key_files_that_are_not_files_are_refused_at_once(workdir: Path, kind: str) -> None:
    """An API key file or signing key that is a named pipe (opening one used to wait for a
    writer, forever: `sweep` hung), a folder or a device: exit 2 within seconds, one line
    naming the key and what the path is."""
    _key_file_config(workdir, b"sk-file-mode-0001\n", 0o600)
    (workdir / "key").unlink()
    _make_not_a_file(workdir / "key", kind)
    _make_not_a_file(workdir / "audit-signing.key", kind)
    for args, named in [
        (("sweep",), "providers.fireworks.api_key_file: the API key file"),
        (("audit", "pubkey"), "the signing key"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "retention", *args],
            cwd=workdir,
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert named in line and f"is not a regular file but a {kind}" in line, line
