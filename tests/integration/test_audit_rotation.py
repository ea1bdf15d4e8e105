"""Audit file rotation on a real ledger: the files read in order are the ledger's trail, several
writers rotating at once lose and repeat nothing, rotated files may go, and the verifier reads
the files as one trail, naming a missing file and refusing files out of order."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from retention.audit.hashchain import canonical, record_hash
from retention.audit.verifier import Anchors, Verdict, verify_parts
from retention.config.settings import load_settings
from retention.core.vocabulary import Event
from retention.errors import ConfigError
from retention.evidence.checkpoints import write_checkpoint
from retention.evidence.signing_key import Signer
from retention.evidence.trailfile import iter_records, locator
from retention.ledger.audit_file import AuditSink, _cut_torn_tail
from retention.ledger.audit_rotation import (
    RotationRule,
    read_state,
    rotated_files,
    state_path,
    trail_files,
)
from retention.ledger.audit_writer import lines_between
from retention.ledger.ledger import Ledger
from retention.services.open_ledger import open_ledger
from tests.helpers import auditor_verify
from tests.integration.conftest import Env

SIGNER = Signer(Ed25519PrivateKey.generate())
SMALL = "audit:\n  rotate_bytes: 4KiB\n"


def write_events(ledger: Ledger, transactions: int, *, chain: str | None = None) -> None:
    """`transactions` write transactions of three events each, on `chain` (or the ledger's)."""
    for n in range(transactions):
        with ledger.write(chain=chain) as tx:
            for k in range(3):
                tx.event(Event.SWEEP_STARTED, details={"due": n * 3 + k, "limit": None})


def ledger_lines(ledger: Ledger) -> dict[str, list[str]]:
    """Every chain's lines in the ledger, in seq order."""
    with ledger.read() as conn:
        heads = conn.exec_driver_sql("SELECT name, head_seq FROM audit_chains").all()
        return {name: lines_between(conn, name, 1, head) for name, head in heads}


def file_lines(files: list[Path]) -> dict[str, list[str]]:
    """Every chain's lines in the files read in order."""
    chains: dict[str, list[str]] = {}
    for path in files:
        for raw in path.read_text(encoding="utf-8").splitlines():
            chains.setdefault(json.loads(raw)["chain"], []).append(raw)
    return chains


def verify(files: list[Path], key: Any = None) -> Verdict:
    """The verifier over `files` as one trail, with `key` pinned (hash-only without)."""
    finders = [locator(path) for path in files]
    return verify_parts(
        ((path.name, iter_records(path)) for path in files),
        Anchors(key=key),
        located=lambda chain, seq: any(found(chain, seq) for found in finders),
    )


def test_a_trail_rotated_by_size_is_the_ledgers_trail_in_order(
    make_env: Callable[..., Env],
) -> None:
    """Rotated at 4 KiB: numbered files that sort in order, each near the size, whose lines
    read in order are the ledger's lines exactly; signed to its end it verifies strictly, and
    the auditor's ten lines pass over the files concatenated."""
    env = make_env(extra=SMALL)
    write_events(env.ledger, 20)
    write_checkpoint(env.ledger, SIGNER, timedelta(hours=1))
    write_events(env.ledger, 10)
    write_checkpoint(env.ledger, SIGNER, timedelta(hours=1))
    files = trail_files(env.settings.audit.file)  # type: ignore[arg-type]
    assert [p.name for p in files[:3]] == [
        "audit.000001.jsonl",
        "audit.000002.jsonl",
        "audit.000003.jsonl",
    ]
    assert files[-1].name == "audit.jsonl" and len(files) > 4
    assert files == [*sorted(files[:-1]), files[-1]]
    assert all(p.stat().st_size < 4096 + 4 * 1024 for p in files), "rotated before appending"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert file_lines(files) == ledger_lines(env.ledger)
    verdict = verify(files, SIGNER.public)
    assert verdict.sound, verdict.fault
    assert verdict.chains["main"].checkpoints == 2
    joined = env.path / "joined.jsonl"
    joined.write_text("".join(p.read_text() for p in files))
    assert auditor_verify(joined) == verdict.records


def test_writers_rotating_at_once_keep_every_seq_once_in_order(
    make_env: Callable[..., Env],
) -> None:
    """Four writers (two on chain `main`, as the daemon and a command are, and one on each of
    two more chains) append and rotate the same 4 KiB file at once: each chain's lines across
    the files are the ledger's, each seq once, in order."""
    env = make_env(extra=SMALL)
    ledgers = [open_ledger(env.settings) for _ in range(4)]
    chains = [None, None, "replica_b", "replica_c"]
    errors: list[BaseException] = []

    def run(ledger: Ledger, chain: str | None) -> None:
        try:
            write_events(ledger, 25, chain=chain)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=pair) for pair in zip(ledgers, chains, strict=True)
    ]
    with capture_logs() as logs:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for ledger in ledgers:
        ledger.close()
    assert not errors
    assert not [e for e in logs if e["event"] in ("audit.file_write_failed", "audit.file_diverged")]
    files = trail_files(env.settings.audit.file)  # type: ignore[arg-type]
    assert len(files) > 10
    expected = ledger_lines(env.ledger)
    assert {name: len(lines) for name, lines in expected.items()} == {
        "main": 150,
        "replica_b": 75,
        "replica_c": 75,
    }
    assert file_lines(files) == expected
    assert verify(files).sound


def test_rotated_files_may_go_without_the_chain_starting_again(
    make_env: Callable[..., Env],
) -> None:
    """With `keep: 2` older rotated files are deleted; the live file goes on from the state
    file, not from seq 1. A live file lost meanwhile is rebuilt from where the rotated files
    stopped: the files left verify as one trail (hash-only: their start was deleted)."""
    env = make_env(extra=SMALL + "  keep: 2\n")
    with capture_logs() as logs:
        write_events(env.ledger, 30)
    assert [e for e in logs if e["event"] == "audit.pruned"]
    live: Path = env.settings.audit.file  # type: ignore[assignment]
    files = trail_files(live)
    assert len(files) == 3 and files[0].name != "audit.000001.jsonl"
    state = read_state(live)
    assert state.number >= 3 and state.heads["main"][0] > 1
    live.unlink()  # lost: the next write brings back what it held
    write_events(env.ledger, 1)
    files = trail_files(live)
    seqs = [json.loads(raw)["seq"] for path in files for raw in path.read_text().splitlines()]
    assert seqs == list(range(seqs[0], 94)) and seqs[0] <= state.heads["main"][0] < 93
    verdict = verify(files)
    assert verdict.sound, verdict.fault
    assert verdict.chains["main"].last_seq == 93


def test_a_file_is_rotated_once_its_first_record_is_older_than_the_interval(
    make_env: Callable[..., Env],
) -> None:
    """`rotate_interval: 1h` counts from the live file's first record, in the trail's own
    time: records 30 minutes later join it, one an hour and a minute later starts a new one."""
    env = make_env(extra="audit:\n  rotate_interval: 1h\n")
    now = [datetime.now(UTC)]
    ledger = open_ledger(env.settings, clock=lambda: now[0])
    try:
        write_events(ledger, 1)
        now[0] += timedelta(minutes=30)
        write_events(ledger, 1)
        live: Path = env.settings.audit.file  # type: ignore[assignment]
        assert len(trail_files(live)) == 1
        now[0] += timedelta(minutes=31)
        write_events(ledger, 1)
    finally:
        ledger.close()
    files = trail_files(live)
    assert [p.name for p in files] == ["audit.000001.jsonl", "audit.jsonl"]
    assert len(files[0].read_text().splitlines()) == 6
    assert [json.loads(raw)["seq"] for raw in live.read_text().splitlines()] == [7, 8, 9]


def test_a_rotation_that_fails_is_logged_and_the_trail_goes_on(
    make_env: Callable[..., Env],
) -> None:
    """When the state file cannot be written, nothing is renamed: `audit.file_write_failed`
    (operation `rotate`) is logged once (the next try is a minute later), and every line goes
    on in the live file."""
    env = make_env(extra=SMALL)
    live: Path = env.settings.audit.file  # type: ignore[assignment]
    write_events(env.ledger, 2)
    (live.parent / (live.name + ".rotation.json")).mkdir()  # in the way
    with capture_logs() as logs:
        write_events(env.ledger, 18)
    failed = [e for e in logs if e["event"] == "audit.file_write_failed"]
    assert len(failed) == 1 and failed[0]["operation"] == "rotate"
    assert "rotation state" in failed[0]["error"] and str(live) == failed[0]["path"]
    assert trail_files(live) == [live]
    assert file_lines([live]) == ledger_lines(env.ledger)


@pytest.mark.parametrize("loss", ["lost", "stale"])
def test_a_lost_or_stale_rotation_state_is_rebuilt_from_the_rotated_files(
    make_env: Callable[..., Env], loss: str
) -> None:
    """The state file lost (or put back from an older copy) with the live file: the next write
    brings the state up to date from the rotated files (logged), and the chain goes on where
    they stop, never from seq 1 and never past `rotate_bytes`: each seq is in the files once,
    and the next rotation takes the next number."""
    env = make_env(extra=SMALL)
    live: Path = env.settings.audit.file  # type: ignore[assignment]
    write_events(env.ledger, 8)
    older = state_path(live).read_text()
    write_events(env.ledger, 12)
    before, highest = read_state(live), rotated_files(live)[-1][0]
    assert before.number == highest > 2
    if loss == "lost":
        state_path(live).unlink()
    else:
        state_path(live).write_text(older)
    live.unlink()
    with capture_logs() as logs:
        write_events(env.ledger, 1)
    rebuilt = [e for e in logs if e["event"] == "audit.rotation_state_rebuilt"]
    assert len(rebuilt) == 1 and rebuilt[0]["last_rotated"] == highest
    assert read_state(live).heads == before.heads and read_state(live).number == highest
    write_events(env.ledger, 10)
    files = trail_files(live)
    numbers = [number for number, _ in rotated_files(live)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers[-1] > highest
    assert all(p.stat().st_size < 4096 + 4 * 1024 for p in files)
    assert file_lines(files) == ledger_lines(env.ledger)
    assert verify(files).sound


@pytest.mark.parametrize("gone", ["every rotated file", "the newest rotated files"])
def test_with_the_files_that_numbered_it_gone_a_lost_state_stops_rotation(
    make_env: Callable[..., Env], gone: str
) -> None:
    """The state file lost with the rotated files that tell the last number: the live file is
    not rotated (a shipped name would be used again), `audit.file_write_failed` says why and
    how to write the state, the trail goes on in the live file; with the state written by
    hand, the next rotation takes the number after it."""
    env = make_env(extra=SMALL)
    live: Path = env.settings.audit.file  # type: ignore[assignment]
    write_events(env.ledger, 20)
    rotated = rotated_files(live)
    highest = rotated[-1][0]
    for _, path in rotated if gone == "every rotated file" else rotated[-2:]:
        path.unlink()
    state_path(live).unlink()
    left = [path for _, path in rotated_files(live)]
    with capture_logs() as logs:
        write_events(env.ledger, 10)
    failed = [e for e in logs if e["event"] == "audit.file_write_failed"]
    assert len(failed) == 1 and failed[0]["operation"] == "rotate", failed
    assert "the next number is unknown" in failed[0]["error"]
    assert '"last_rotated": N' in failed[0]["error"]
    assert trail_files(live) == [*left, live] and not state_path(live).exists()
    seqs = [json.loads(raw)["seq"] for raw in live.read_text().splitlines()]
    assert seqs == list(range(seqs[0], 91)) and seqs[0] > 1
    state_path(live).write_text(
        json.dumps({"rotation_state": 1, "last_rotated": highest, "chains": {}})
    )
    again = open_ledger(env.settings)  # a new writer: no minute to wait before it tries
    try:
        write_events(again, 1)
    finally:
        again.close()
    assert rotated_files(live)[-1][0] == highest + 1


def test_the_first_record_time_is_read_again_once_the_file_is_cut(tmp_path: Path) -> None:
    """The live file's first `ts` is cached per file; a file cut back to nothing (a lone torn
    line dropped) and written again gives its new first record's `ts`, not the old one."""
    live = tmp_path / "audit.jsonl"
    first = {"chain": "main", "seq": 1, "ts": "2000-01-01T00:00:00Z", "note": "x" * 200}
    live.write_text(canonical(first) + "\n" + canonical({**first, "seq": 2}) + "\n")
    sink = AuditSink(live, rotation=RotationRule(interval=timedelta(hours=1)))
    fd = os.open(live, os.O_WRONLY | os.O_APPEND)
    try:
        assert sink._first_record_ts(fd) == "2000-01-01T00:00:00Z"
        os.truncate(live, 0)
        os.write(fd, b'{"chain":"main","seq":7,"ts":"20')  # a crash mid-line
        _cut_torn_tail(fd, live)
        assert live.stat().st_size == 0
        later = datetime.now(UTC).isoformat()
        os.write(fd, (canonical({"chain": "main", "seq": 7, "ts": later}) + "\n").encode())
        assert sink._first_record_ts(fd) == later
    finally:
        os.close(fd)


def _resealed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with each hash and link computed again: a chain sound in itself."""
    out: list[dict[str, Any]] = []
    for record in records:
        body = {k: v for k, v in record.items() if k != "hash"}
        body["prev_hash"] = out[-1]["hash"] if out else record["prev_hash"]
        out.append({**body, "hash": record_hash(body)})
    return out


def test_records_written_again_are_skipped_once_proven_the_same(
    make_env: Callable[..., Env],
) -> None:
    """A file holding the chain again from seq 1 (as a writer wrote it after losing the rotation
    state and the live file), then going on: sound under the key, a warning naming it, each
    record counted once. The same file with a record changed (hashes and links made anew) is
    `diverged`, without one `out_of_order`, and one that stops before the last record
    verified is `out_of_order`."""
    env = make_env(extra=SMALL)
    write_events(env.ledger, 12)
    write_checkpoint(env.ledger, SIGNER, timedelta(hours=1))
    write_events(env.ledger, 3)
    write_checkpoint(env.ledger, SIGNER, timedelta(hours=1))
    files = trail_files(env.settings.audit.file)  # type: ignore[arg-type]
    rotated, records = files[:-1], [json.loads(r) for p in files for r in p.read_text().split()]
    last_rotated = json.loads(rotated[-1].read_text().split()[-1])["seq"]
    again = env.path / "again.jsonl"

    def verify_again(lines: list[dict[str, Any]], upto: list[Path] = rotated) -> Verdict:
        again.write_text("".join(canonical(r) + "\n" for r in lines))
        return verify([*upto, again], SIGNER.public)

    verdict = verify_again(records)
    assert verdict.sound, verdict.fault
    assert verdict.records == len(records) and verdict.chains["main"].checkpoints == 2
    assert verdict.warnings == [
        f"again.jsonl: chain main seq 1-{last_rotated}: the same records as in the files before "
        "it, skipped (written again after the rotation state or the live file was lost?)"
    ]
    changed = [*records[:5], *_resealed([{**records[5], "actor": "someone"}, *records[6:]])]
    fault = verify_again(changed).fault
    assert fault is not None and (fault.kind, fault.seq, fault.file) == ("diverged", 1, again.name)
    assert f"seq {last_rotated} differs" in fault.detail
    fault = verify_again(records[:5] + records[6:]).fault
    assert fault is not None and (fault.kind, fault.seq) == ("out_of_order", 7), fault
    fault = verify_again(records[:5], upto=files).fault
    assert fault is not None and (fault.kind, fault.file) == ("out_of_order", again.name)
    assert "the trail ends before the repeat reaches" in fault.detail


@pytest.fixture
def two_chain_trail(make_env: Callable[..., Env]) -> list[Path]:
    """A trail of chains `main` and `replica` interleaved, rotated at 4 KiB into six or more
    files."""
    env = make_env(extra=SMALL)
    for _ in range(12):
        write_events(env.ledger, 1)
        write_events(env.ledger, 1, chain="replica")
    files = trail_files(env.settings.audit.file)  # type: ignore[arg-type]
    assert len(files) >= 6
    return files


def test_a_missing_file_is_named_with_the_records_it_held(two_chain_trail: list[Path]) -> None:
    """Interleaved chains verify across the files; without the third file the fourth is named
    with the seq it starts at, the file before, and the records missing between them."""
    files = two_chain_trail
    assert verify(files).sound
    gap = verify(files[:2] + files[3:])
    assert gap.fault is not None and gap.fault.kind == "missing"
    assert gap.fault.file == files[3].name
    message = str(gap.fault)
    assert message.startswith(f"{files[3].name}: chain ")
    assert f"in {files[1].name}: records " in message and "are missing" in message
    assert "a rotated file is missing between these two?" in message


def test_files_out_of_order_are_told_apart_from_a_missing_one(two_chain_trail: list[Path]) -> None:
    """The second file given after the third, or the first after the second: `out_of_order`,
    naming the files, never `missing`."""
    files = two_chain_trail
    for given in ([files[0], files[2], files[1], *files[3:]], [files[1], files[0], *files[2:]]):
        verdict = verify(given)
        assert verdict.fault is not None and verdict.fault.kind == "out_of_order", verdict.fault
        assert "give the files oldest first" in verdict.fault.detail


@pytest.mark.parametrize(
    ("audit", "message"),
    [
        ("rotate_bytes: 100", "say 100B for bytes"),
        ("rotate_bytes: 0MiB", "expected a size above 0"),
        ("rotate_bytes: 10 apples", "expected a size like 100MiB"),
        ("rotate_interval: 1y", "duration"),
        ("keep: 3", "set rotate_bytes or rotate_interval too"),
        ("keep: 0\n  rotate_bytes: 1MiB", "expected an integer from 1"),
    ],
)
def test_rotation_settings_are_checked(tmp_path: Path, audit: str, message: str) -> None:
    """A bad rotation key is refused naming its line and key."""
    config = tmp_path / "retention.yaml"
    config.write_text(
        f"providers:\n  fw: {{api_key_env: K, account_id: acme}}\naudit:\n  {audit}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "retention.yaml:4: audit." in str(caught.value) and message in str(caught.value)


def test_rotation_settings_are_read(tmp_path: Path) -> None:
    """Sizes take their unit (binary or decimal), the interval a duration, `0` turns it off."""
    config = tmp_path / "retention.yaml"
    config.write_text(
        "providers:\n  fw: {api_key_env: K, account_id: acme}\n"
        "audit:\n  rotate_bytes: 100MiB\n  rotate_interval: 1d\n  keep: 30\n"
    )
    audit = load_settings(config).audit
    assert (audit.rotate_bytes, audit.rotate_interval, audit.keep) == (
        100 * 2**20,
        timedelta(days=1),
        30,
    )
    config.write_text(
        "providers:\n  fw: {api_key_env: K, account_id: acme}\n"
        "audit:\n  rotate_bytes: 5GB\n  rotate_interval: 0\n"
    )
    audit = load_settings(config).audit
    assert (audit.rotate_bytes, audit.rotate_interval, audit.keep) == (5 * 10**9, None, None)
