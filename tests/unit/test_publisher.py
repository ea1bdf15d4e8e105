"""The publisher thread: committed transactions reach the audit file in commit order, off the
committing thread, and a file that cannot be opened is a logged fault, never a stop."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from retention.core.vocabulary import Event
from retention.ledger.audit_file import AuditSink, Sealed
from retention.ledger.publisher import Publisher


def line(seq: int, event: str = "e") -> str:
    """A stand-in audit line of chain `main`."""
    return json.dumps({"chain": "main", "seq": seq, "event": event})


def sealed(first: int, last: int, event: str = "e") -> Sealed:
    """A transaction that wrote seqs first..last, all held in memory."""
    result = Sealed("main", first)
    result.add(
        [
            ({"chain": "main", "seq": s, "event": event}, line(s, event))
            for s in range(first, last + 1)
        ]
    )
    return result


def backfill(chain: str, first: int, last: int) -> list[str]:
    """Lines the ledger holds, for every seq asked."""
    return [line(s) for s in range(first, last + 1)]


def seqs_in(path: Path) -> list[int]:
    """The seqs of the file's lines, in order."""
    return [json.loads(raw)["seq"] for raw in path.read_text().splitlines()]


def test_transactions_are_published_in_the_order_given(tmp_path: Path) -> None:
    """Fifty transactions queued one after the other are in the file in order once drained."""
    path = tmp_path / "audit.jsonl"
    publisher = Publisher(AuditSink(path), backfill, waiting=4)
    for n in range(50):
        publisher.put(sealed(2 * n + 1, 2 * n + 2))
    publisher.drain()
    assert seqs_in(path) == list(range(1, 101))
    publisher.close()


def test_a_file_that_cannot_be_opened_is_a_fault_and_the_thread_goes_on(tmp_path: Path) -> None:
    """A folder in the file's place: each transaction logs `audit.file_write_failed` with its
    events, and once the path is a file again the next one fills the gap from the ledger."""
    path = tmp_path / "audit.jsonl"
    path.mkdir()
    publisher = Publisher(AuditSink(path), backfill)
    with capture_logs() as logs:
        publisher.put(sealed(1, 3))
        publisher.drain()
    faults = [entry for entry in logs if entry["event"] == "audit.file_write_failed"]
    assert faults and faults[0]["operation"] == "open"
    assert sum(1 for entry in logs if entry["event"] == "e") == 3  # logged all the same
    path.rmdir()
    publisher.put(sealed(4, 5))
    publisher.close()
    assert seqs_in(path) == [1, 2, 3, 4, 5]


def test_bulk_events_are_left_out_of_the_log_but_alerts_are_not(tmp_path: Path) -> None:
    """A sink told not to log `response.recorded` logs none of them, reads nothing back for
    a transaction of only those, and still logs the other events."""
    sink = AuditSink(tmp_path / "audit.jsonl", unlogged=frozenset({Event.RESPONSE_RECORDED}))
    with capture_logs() as logs:
        sink.publish_alone(sealed(1, 3, event=Event.RESPONSE_RECORDED), backfill)
        sink.publish_alone(sealed(4, 4, event=Event.RESPONSE_FAILED), backfill)
        sink.publish_alone(sealed(5, 5, event=Event.RESPONSE_DELETED), backfill)
    assert [entry["event"] for entry in logs] == [Event.RESPONSE_FAILED, Event.RESPONSE_DELETED]
    assert seqs_in(tmp_path / "audit.jsonl") == [1, 2, 3, 4, 5]
