"""An auditor's `retention audit verify` over a rotated trail: a trail rotated three times
verifies across its files under the pinned key; a file missing from the middle is named, exit 1;
files whose first records are out of order, or a file given twice, are refused, exit 2; files out
of order found while reading are a fault, exit 1 with the verdict; a trail whose rotation state
and live file were lost goes on and verifies, and records written again are skipped."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from retention.audit.signatures import public_pem
from retention.config.settings import load_settings
from retention.core.vocabulary import Event
from retention.evidence.checkpoints import write_checkpoint
from retention.evidence.signing_key import Signer
from retention.ledger.audit_rotation import state_path, trail_files
from retention.services.open_ledger import open_ledger
from tests.helpers import cli, write_config

URL = "http://127.0.0.1:9/v1"  # never asked: nothing here talks to a provider


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A trail written by the ledger with `rotate_bytes: 4KiB` until it was rotated three
    times, then signed to its end: three rotated files and the live one; `pub.pem` beside.
    Made once: the tests only read it."""
    workdir = tmp_path_factory.mktemp("rotated")
    config = write_config(workdir, URL, extra="audit:\n  rotate_bytes: 4KiB\n")
    settings = load_settings(config)
    assert settings.audit.file is not None and settings.audit.signing_key_file is not None
    signer = Signer.from_file(settings.audit.signing_key_file, create=True)
    ledger = open_ledger(settings, log_events=False)
    signed = None
    try:
        while len(trail_files(settings.audit.file)) < 4:
            with ledger.write() as tx:
                for due in range(3):
                    tx.event(Event.SWEEP_STARTED, details={"due": due, "limit": None})
            if len(trail_files(settings.audit.file)) == 2 and not signed:
                signed = write_checkpoint(ledger, signer, timedelta(hours=1))
        write_checkpoint(ledger, signer, timedelta(hours=1))
    finally:
        ledger.close()
    (workdir / "pub.pem").write_text(public_pem(signer.public))
    files = trail_files(settings.audit.file)
    assert [p.name for p in files] == [
        "audit.000001.jsonl",
        "audit.000002.jsonl",
        "audit.000003.jsonl",
        "audit.jsonl",
    ]
    return files


@pytest.fixture
def folder(trail: list[Path]) -> Path:
    """Where the trail is: the commands run there."""
    return trail[0].parent


def test_a_trail_rotated_three_times_verifies_across_its_files(
    folder: Path, trail: list[Path]
) -> None:
    """`audit verify audit.000001.jsonl ... audit.jsonl --pubkey pub.pem`: sound, every record
    of the four files, two signed checkpoints, exit 0."""
    names = [p.name for p in trail]
    result = cli("audit", "verify", *names, "--pubkey", "pub.pem", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    records = sum(len(p.read_text().splitlines()) for p in trail)
    assert (
        result.stdout.strip() == f"sound: {records} records in 1 chain(s), 2 signed checkpoint(s)"
    )


def test_a_file_missing_from_the_middle_is_named(folder: Path, trail: list[Path]) -> None:
    """`audit verify f1 f2 f4`: exit 1, naming the file after the gap, the file before it and
    the records missing between them."""
    first, second, third, live = trail
    before = third.read_text().splitlines()
    start, end = (int(line.split('"seq":')[1].split(",")[0]) for line in (before[0], before[-1]))
    result = cli(
        "audit", "verify", first.name, second.name, live.name, "--pubkey", "pub.pem", cwd=folder
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == (
        f"TAMPERED: audit.jsonl: chain main seq {end + 1}: missing: follows seq {start - 1} "
        f"in audit.000002.jsonl: records {start}-{end} are missing (a rotated file is missing "
        "between these two?)"
    )


def test_files_out_of_order_are_refused(folder: Path, trail: list[Path]) -> None:
    """The first two files swapped: exit 2, one line naming both and the order to give."""
    first, second, third, live = trail
    result = cli(
        "audit",
        "verify",
        second.name,
        first.name,
        third.name,
        live.name,
        "--hash-only",
        cwd=folder,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        "retention: error: audit.000001.jsonl: chain main starts at seq 1, before "
        "audit.000002.jsonl"
    )
    assert "give the files oldest first" in result.stderr and "Traceback" not in result.stderr


def test_files_out_of_order_found_while_reading_are_a_fault(
    folder: Path, trail: list[Path]
) -> None:
    """The third file given before the second (their first records alone do not show it): exit
    1 with the JSON verdict, `out_of_order` naming the third file and the order to give."""
    first, second, third, live = trail
    names = [first.name, third.name, second.name, live.name]
    result = cli("audit", "verify", *names, "--hash-only", "-o", "json", cwd=folder)
    assert result.returncode == 1, result.stdout + result.stderr
    fault = json.loads(result.stdout)["fault"]
    assert (fault["kind"], fault["file"]) == ("out_of_order", "audit.000003.jsonl")
    assert "give the files oldest first" in fault["detail"]


def test_a_copy_of_a_file_given_again_is_refused(
    folder: Path, trail: list[Path], tmp_path: Path
) -> None:
    """A rotated file given again under another name (a copy, byte for byte): exit 2, naming
    both."""
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(trail[1], copy)
    result = cli("audit", "verify", *[p.name for p in trail], str(copy), "--hash-only", cwd=folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        f"retention: error: {copy} is given twice (a copy of audit.000002.jsonl, byte for byte)"
    )


def test_a_trail_whose_state_and_live_file_were_lost_goes_on_and_verifies(
    folder: Path, tmp_path: Path
) -> None:
    """The rotation state and the live file deleted, then a write and a checkpoint: the chain
    goes on after the rotated files (no file holds it again from seq 1), and `audit verify
    audit.*.jsonl audit.jsonl --pubkey` is sound, without warnings."""
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    settings = load_settings(copy / "retention.yaml")
    assert settings.audit.file is not None and settings.audit.signing_key_file is not None
    state_path(settings.audit.file).unlink()
    settings.audit.file.unlink()
    ledger = open_ledger(settings, log_events=False)
    try:
        with ledger.write() as tx:
            tx.event(Event.SWEEP_STARTED, details={"due": 1, "limit": None})
        signer = Signer.from_file(settings.audit.signing_key_file, create=False)
        write_checkpoint(ledger, signer, timedelta(hours=1))
    finally:
        ledger.close()
    files = [p.name for p in trail_files(settings.audit.file)]
    assert files[-1] == "audit.jsonl" and len(files) == 4
    result = cli("audit", "verify", *files, "--pubkey", "pub.pem", cwd=copy)
    assert result.returncode == 0 and result.stderr == "", result.stdout + result.stderr
    assert result.stdout.startswith("sound: ")


def test_records_written_again_are_skipped_with_a_warning(
    folder: Path, trail: list[Path], tmp_path: Path
) -> None:
    """A file that holds the whole trail again (a writer that lost the rotation state and the
    live file wrote it so): sound, exit 0, each record counted once, a warning naming it."""
    again = tmp_path / "again.jsonl"
    again.write_text("".join(p.read_text() for p in trail))
    names = [p.name for p in trail[:-1]]
    result = cli("audit", "verify", *names, str(again), "--pubkey", "pub.pem", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    records = sum(len(p.read_text().splitlines()) for p in trail)
    assert result.stdout.startswith(f"sound: {records} records in 1 chain(s)")
    assert result.stderr.startswith(f"warning: {again}: chain main seq 1-")
    assert "the same records as in the files before it, skipped" in result.stderr


def test_db_backup_of_a_postgresql_ledger_says_to_use_pg_dump(workdir: Path) -> None:
    """PostgreSQL: exit 2, one line with the pg_dump and pg_restore commands, no password."""
    write_config(workdir, URL)
    env = {"RETENTION_DATABASE_URL": "postgresql://ops:s3cret@db.internal:5432/retention"}
    result = cli("db", "backup", "ledger.dump", cwd=workdir, env=env)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "s3cret" not in line
    assert "pg_dump --format=custom --file=ledger.dump" in line and "pg_restore" in line
    assert not (workdir / "ledger.dump").exists()
