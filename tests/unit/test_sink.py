"""Publishing committed audit lines to the file: gaps filled in pages, divergence reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from retention.errors import LedgerError
from retention.ledger.audit_file import AuditSink, Sealed


def line(seq: int, note: str = "") -> str:
    """A stand-in audit line of chain `main`."""
    return json.dumps({"chain": "main", "seq": seq, "event": "e", "note": note})


def sealed(first: int, last: int, held: int) -> Sealed:
    """A transaction that wrote seqs first..last and holds the last `held` lines."""
    result = Sealed("main", first)
    seqs = range(last - held + 1, last + 1)
    result.add([({"chain": "main", "seq": s, "event": "e"}, line(s)) for s in seqs])
    return result


def backfill(chain: str, first: int, last: int) -> list[str]:
    """Lines the ledger holds, for every seq asked."""
    return [line(s) for s in range(first, last + 1)]


def publish(path: Path, tx: Sealed) -> list[dict[str, object]]:
    """Publish `tx` through a sink on `path`; the log entries it made."""
    sink = AuditSink(path)
    with capture_logs() as logs, sink.opened() as fd:
        sink.publish(fd, tx, backfill)
    return logs


def test_a_long_transaction_is_written_whole_from_pages(tmp_path: Path) -> None:
    """Earlier chunks of a transaction are read back, so the file holds every seq once."""
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line(s) + "\n" for s in range(1, 3)))
    logs = publish(path, sealed(3, 25_000, held=100))
    seqs = [json.loads(raw)["seq"] for raw in path.read_text().splitlines()]
    assert seqs == list(range(1, 25_001))
    assert sum(1 for entry in logs if entry["event"] == "e") == 24_998  # each event logged


def test_divergence_inside_a_long_transaction_is_reported(tmp_path: Path) -> None:
    """A file already past the transaction's first seq (a ledger restored from a backup, say)
    is reported even when that seq belongs to a chunk no longer held in memory."""
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line(s, "old timeline") + "\n" for s in range(1, 32)))
    logs = publish(path, sealed(12, 12_011, held=11))
    diverged = [entry for entry in logs if entry["event"] == "audit.file_diverged"]
    assert diverged and diverged[0]["file_seq"] == 31 and diverged[0]["ledger_seq"] == 12


def seqs_in(path: Path) -> list[int]:
    """The seqs of the file's lines, in order."""
    return [json.loads(raw)["seq"] for raw in path.read_text().splitlines()]


def test_a_later_transaction_appended_first_leaves_the_earlier_nothing_to_write(
    tmp_path: Path,
) -> None:
    """Seq 6 committed after seq 5 but appended first: it writes 5 from the ledger, then the
    transaction of 5 finds its line there and writes nothing; no divergence is reported."""
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line(s) + "\n" for s in range(1, 5)))
    logs = publish(path, sealed(6, 6, held=1)) + publish(path, sealed(5, 5, held=1))
    assert seqs_in(path) == [1, 2, 3, 4, 5, 6]
    assert not [entry for entry in logs if entry["event"] == "audit.file_diverged"]


@pytest.mark.parametrize("in_file", [2, 12, 10_500, 11_950, 12_000, 12_010])
def test_lines_already_in_the_file_are_written_once(tmp_path: Path, in_file: int) -> None:
    """A transaction of seqs 3..12,000 (the last 100 held) adds only the seqs after the file's
    last one, whether that lies before it, in a read-back page, among the lines held, or past
    its end."""
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line(s) + "\n" for s in range(1, in_file + 1)))
    logs = publish(path, sealed(3, 12_000, held=100))
    assert seqs_in(path) == list(range(1, max(in_file, 12_000) + 1))
    assert not [entry for entry in logs if entry["event"] == "audit.file_diverged"]


def test_a_ledger_that_fails_the_read_back_is_logged_not_raised(tmp_path: Path) -> None:
    """The transaction committed before the file is written: a read-back that fails (the
    database away) is logged as `audit.file_write_failed`, and the caller is not told its
    committed write failed."""
    path = tmp_path / "audit.jsonl"
    path.write_text(line(1) + "\n")

    def away(chain: str, first: int, last: int) -> list[str]:
        raise LedgerError("write failed: the database is away")

    sink = AuditSink(path)
    with capture_logs() as logs, sink.opened() as fd:
        sink.publish(fd, sealed(2, 30, held=5), away)
    failed = [entry for entry in logs if entry["event"] == "audit.file_write_failed"]
    assert failed and "away" in str(failed[0]["error"])
    assert seqs_in(path) == [1]


def test_a_file_rotated_during_the_transaction_is_left_as_it_was(tmp_path: Path) -> None:
    """The file renamed (log rotation) between opening it and publishing: the rotated file is
    neither cut nor appended to; the lines go to the file now at the path."""
    path, rotated = tmp_path / "audit.jsonl", tmp_path / "audit.jsonl.1"
    path.write_text("".join(line(s) + "\n" for s in range(1, 4)) + '{"torn')
    sink = AuditSink(path)
    with capture_logs(), sink.opened() as fd:
        path.rename(rotated)
        sink.publish(fd, sealed(4, 4, held=1), backfill)
    assert rotated.read_text().endswith('{"torn')
    assert seqs_in(path) == [1, 2, 3, 4]  # the new file starts the chain again from the ledger
