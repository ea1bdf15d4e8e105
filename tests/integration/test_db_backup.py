"""`retention db backup`: a copy taken while a writer writes is one consistent moment of the
ledger, and a copy restored as the database file verifies and counts as the ledger did."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retention.audit.verifier import Anchors, verify_records
from retention.core.record_input import NewRecord
from retention.errors import LedgerError, UsageError
from retention.evidence.checkpoints import write_checkpoint
from retention.evidence.signing_key import Signer
from retention.ledger import backup
from retention.ledger.backup import backup_ledger
from retention.services.open_ledger import open_ledger
from retention.services.recording import enrol
from tests.helpers import cli
from tests.integration.conftest import Env


def _writer(env: Env, stop: threading.Event, written: list[int]) -> None:
    """Record IDs one transaction at a time, through a ledger of its own, until stopped."""
    ledger = open_ledger(env.settings, log_events=False)
    try:
        while not stop.is_set():
            n = written[0]
            new = [
                NewRecord(response_id=f"w_{n}_{k}", created_at=datetime.now(UTC)) for k in range(5)
            ]
            enrol(ledger, env.settings, env.policies, new)
            written[0] += 1
    finally:
        ledger.close()


def _consistent(copy: Path, key: object) -> int:
    """Check a backup on its own: each record with its `response.recorded` event (one moment,
    never half a transaction), the trail sound up to the heads the copy holds; its records."""
    with sqlite3.connect(copy) as conn:
        records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        recorded = conn.execute(
            "SELECT count(*) FROM audit_events WHERE event = 'response.recorded'"
        ).fetchone()[0]
        heads = {
            n: (s, h)
            for n, s, h in conn.execute("SELECT name, head_seq, head_hash FROM audit_chains")
        }
        lines = [
            json.loads(line)
            for (line,) in conn.execute("SELECT line FROM audit_events ORDER BY chain, seq")
        ]
    assert records == recorded
    verdict = verify_records(lines, Anchors(key=key, expected_heads=heads), strict_ends=False)  # type: ignore[arg-type]
    assert verdict.sound, verdict.fault
    return int(records)


def test_a_backup_taken_while_a_writer_writes_restores_a_sound_ledger(
    make_env: Callable[..., Env], tmp_path: Path
) -> None:
    """A backup taken mid-write is one moment of the ledger; one taken after, restored as the
    database file of another folder, passes `audit verify` and shows the same `status`."""
    env = make_env()
    assert env.settings.audit.signing_key_file is not None
    signer = Signer.from_file(env.settings.audit.signing_key_file, create=True)
    env.record(*(f"resp_{i}" for i in range(30)))
    env.sweep()
    write_checkpoint(env.ledger, signer, timedelta(hours=1))
    stop, written = threading.Event(), [0]
    writer = threading.Thread(target=_writer, args=(env, stop, written))
    writer.start()
    try:
        while written[0] < 3:
            stop.wait(0.01)
        during = backup_ledger(env.settings.database_url, tmp_path / "during.db")
        at_backup = written[0]
    finally:
        stop.set()
        writer.join()
    assert during.file.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".during.db*")) and not Path(f"{during.file}-wal").exists()
    assert 30 + 5 * 3 <= _consistent(during.file, signer.public) <= 30 + 5 * (at_backup + 1)

    made = cli("db", "backup", "after.db", cwd=env.path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"backed up the ledger {env.path / 'retention.db'} to after.db")

    restored = tmp_path / "restored"
    restored.mkdir()
    for name in ("retention.yaml", "policies.yaml", "audit-signing.key"):
        shutil.copy2(env.path / name, restored / name)
    shutil.copy2(env.path / "after.db", restored / "retention.db")
    status = [json.loads(cli("status", "-o", "json", cwd=d).stdout) for d in (env.path, restored)]
    for shown in status:
        shown.pop("ledger")
    assert status[0] == status[1]
    assert status[1]["total"] == 30 + 5 * written[0] and status[1]["states"]["absent"] == 30
    verified = cli("audit", "verify", cwd=restored)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("sound: ") and "signed checkpoint(s)" in verified.stdout


def test_an_existing_file_is_replaced_only_when_asked(env: Env, tmp_path: Path) -> None:
    """Without `force` an existing file stays as it was; with it, it becomes the backup;
    the ledger itself is never a target."""
    env.record("resp_1")
    target = tmp_path / "kept.db"
    target.write_text("an operator's file\n")
    with pytest.raises(UsageError, match="exists; give --force"):
        backup_ledger(env.settings.database_url, target)
    assert target.read_text() == "an operator's file\n"
    made = backup_ledger(env.settings.database_url, target, force=True)
    assert made.chains == {"main": 2} and target.read_bytes().startswith(b"SQLite format 3\x00")
    with pytest.raises(UsageError, match="the ledger itself"):
        backup_ledger(env.settings.database_url, env.path / "retention.db-wal", force=True)


def test_without_hard_links_the_backup_still_never_takes_an_existing_name(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem without hard links (link(2) says EPERM) the backup is made all the same,
    0600 and whole, nothing left beside it; a file made at the name meanwhile is kept as it
    was, the copy given up."""
    env.record("resp_1")

    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    out = tmp_path / "backups"
    out.mkdir()
    monkeypatch.setattr(os, "link", no_links)
    made = backup_ledger(env.settings.database_url, out / "copy.db")
    assert made.chains == {"main": 2} and made.file.read_bytes().startswith(b"SQLite format 3")
    assert made.file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in out.iterdir()] == ["copy.db"]
    copy, meanwhile = out / "copy.tmp", out / "meanwhile.db"
    copy.write_text("the copy\n")
    meanwhile.write_text("an operator's file\n")
    with pytest.raises(UsageError, match=r"meanwhile\.db exists; give --force"):
        backup._name_new(copy, meanwhile)
    assert meanwhile.read_text() == "an operator's file\n" and copy.exists()


def test_a_backup_the_disk_cannot_hold_fails_with_exit_1(env: Env, tmp_path: Path) -> None:
    """A copy that cannot be written whole (the file size limit reached, as on a full disk) is
    a failed backup, exit 1, naming the ledger and the folder, with nothing left; a FILE this
    user may not write there is bad usage, exit 2, and a full disk there exit 1."""
    env.record(*(f"resp_{i}" for i in range(300)))
    target = tmp_path / "backups" / "full.db"
    target.parent.mkdir()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, limits[1]))
    try:
        with pytest.raises(LedgerError) as caught:
            backup_ledger(env.settings.database_url, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert caught.value.exit_code == 1
    assert str(target.parent) in caught.value.message and "nothing was written" in str(caught.value)
    assert list(target.parent.iterdir()) == []
    denied = backup._write_failed(target, OSError(errno.EACCES, "Permission denied"))
    assert isinstance(denied, UsageError) and denied.exit_code == 2
    full = backup._write_failed(target, OSError(errno.ENOSPC, "No space left on device"))
    assert full.exit_code == 1 and full.message == (
        f"{target}: cannot write the backup: No space left on device; nothing was written"
    )
