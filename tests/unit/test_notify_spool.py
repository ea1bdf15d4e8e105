"""A webhook's spool: lines leave in order and once, the oldest are kept when it is full, a
torn line is skipped, the delivered head is cut off, and one process at a time delivers."""

from __future__ import annotations

import json
from pathlib import Path

from retention.notify.spool import COMPACT_BYTES, Spool


def _lines(n: int, start: int = 0, pad: int = 0) -> list[str]:
    """`n` notification lines numbered from `start`."""
    return [json.dumps({"n": i, "pad": "x" * pad}) for i in range(start, start + n)]


def _drain(spool: Spool, batch: int = 7) -> list[int]:
    """Deliver everything, `batch` lines at a time; the numbers in delivery order."""
    seen = []
    while lines := spool.peek(batch):
        for line, end in lines:
            if line:
                seen.append(json.loads(line)["n"])
            spool.advance(end)
    return seen


def test_lines_leave_in_order_once_and_the_file_is_private(tmp_path: Path) -> None:
    """Appended lines come back oldest first; once delivered they are gone, and the file is
    emptied; the files are 0600."""
    spool = Spool(tmp_path / "s.jsonl", max_bytes=1 << 20)
    assert spool.append(_lines(10)) == 10
    assert spool.waiting() == 10 and spool.has_waiting()
    head = spool.peek(3)
    spool.advance(head[-1][1])
    assert spool.waiting() == 7
    assert spool.append(_lines(5, start=10)) == 5
    assert _drain(spool) == list(range(3, 15))
    assert not spool.has_waiting() and spool.waiting() == 0
    assert (tmp_path / "s.jsonl").stat().st_size == 0
    for name in ("s.jsonl", "s.jsonl.lock", "s.jsonl.pos"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


def test_a_full_spool_keeps_the_oldest(tmp_path: Path) -> None:
    """Past `max_bytes` waiting, new lines are refused (the caller counts them); delivered
    ones make room again."""
    lines = _lines(100, start=100, pad=100)  # all of one length
    size = len(lines[0]) + 1
    spool = Spool(tmp_path / "s.jsonl", max_bytes=size * 10)
    assert spool.append(lines[:8]) == 8
    assert spool.append(lines[8:20]) == 2
    head = spool.peek(5)
    spool.advance(head[-1][1])
    assert spool.append(lines[20:30]) == 5
    assert _drain(spool) == [*range(105, 110), *range(120, 125)]


def test_a_torn_last_line_is_skipped_and_the_next_ones_kept(tmp_path: Path) -> None:
    """A crash's half-written line (no newline) is not delivered, nor counted as waiting,
    while it is last; after the next append it is a line of its own that the reader skips."""
    path = tmp_path / "s.jsonl"
    spool = Spool(path, max_bytes=1 << 20)
    spool.append(_lines(2))
    with path.open("ab") as handle:
        handle.write(b'{"n": 99, "pa')
    assert [json.loads(line)["n"] for line, _ in spool.peek(10)] == [0, 1]
    spool.advance(spool.peek(10)[-1][1])
    assert spool.peek(10) == [] and not spool.has_waiting()  # a torn line alone: nothing waits
    spool.append(_lines(2, start=2))
    found = []
    for line, end in spool.peek(10):
        try:
            found.append(json.loads(line)["n"])
        except ValueError:
            found.append("torn")
        spool.advance(end)
    assert found == ["torn", 2, 3]


def test_the_delivered_head_is_cut_off_and_order_holds(tmp_path: Path) -> None:
    """Once more than COMPACT_BYTES were delivered and they are half the file, `tidy` moves the
    rest to a new file; delivery goes on where it was, and a second reader (another process)
    sees the same position."""
    path = tmp_path / "s.jsonl"
    spool = Spool(path, max_bytes=8 << 20)
    count = COMPACT_BYTES // 500 + 400
    spool.append(_lines(count, pad=480))
    inode = path.stat().st_ino
    seen: list[int] = []
    while len(seen) < count - 100:
        for line, end in spool.peek(50):
            seen.append(json.loads(line)["n"])
            spool.advance(end)
        spool.tidy()
    assert path.stat().st_ino != inode and path.stat().st_size < COMPACT_BYTES
    other = Spool(path, max_bytes=8 << 20)
    assert other.waiting() == count - len(seen)
    spool.append(_lines(3, start=count))
    assert seen + _drain(other) == list(range(count + 3))


def test_one_process_at_a_time_delivers(tmp_path: Path) -> None:
    """The drain lock is held by one Spool (a process) at a time; the other is told so."""
    first, second = Spool(tmp_path / "s.jsonl", 4096), Spool(tmp_path / "s.jsonl", 4096)
    with first.draining() as mine, second.draining() as theirs:
        assert (mine, theirs) == (True, False)
    with second.draining() as theirs:
        assert theirs
