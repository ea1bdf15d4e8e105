"""Publish committed audit records: append them to `audit.file` and log them through structlog.

The database is the source of truth. After each commit the file is appended under an
exclusive lock, held only for the append: each writer writes the chain's lines the file lacks,
from the file's last seq up to its transaction's, read back from the ledger when another
process committed them (or a crash kept them out). A writer that finds its lines already there
(a later transaction appended them first) writes nothing, so the file holds each seq once, in
chain order, however the appends of several processes interleave.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retention.core.vocabulary import Event
from retention.errors import AuditError, RetentionError
from retention.files import make_private
from retention.logs import get_logger

BACKFILL_PAGE = 10_000  # lines read back from the ledger at a time

# every other audit event is logged at info
ALERT_EVENTS = frozenset({Event.RESPONSE_FAILED})
ALERT_PREFIXES = ("provider.",)

Backfill = Callable[[str, int, int], list[str]]  # (chain, first_seq, last_seq) -> lines


class AuditSink:
    """Where sealed records go after their transaction commits."""

    def __init__(
        self, path: Path | None, *, log_events: bool = True, alerts_only: bool = False
    ) -> None:
        self.path = path
        self.log_events = log_events
        self.alerts_only = alerts_only  # a one-shot command: the events are in the ledger
        self._log = get_logger("retention.audit")

    @contextmanager
    def opened(self) -> Iterator[int | None]:
        """The file, open for appending (before the transaction: an unwritable file fails it);
        `publish` takes the lock."""
        if self.path is None:
            yield None
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:  # before the transaction: nothing is committed without its line
            raise AuditError(
                f"audit file {self.path}: cannot open for appending: {exc.strerror}; give this "
                "user write access to it and its folder, or set audit.file"
            ) from None
        try:
            make_private(fd, self.path)  # a file found 0644 is made 0600, with a warning
            yield fd
        finally:
            os.close(fd)

    def publish(self, fd: int | None, sealed: Sealed, backfill: Backfill) -> None:
        """Append the transaction's lines to the file under its lock, after any gap, unless they
        are there already; then log each event."""
        # committed already: whatever fails from here is logged, never raised (a caller told
        # "failed" would retry what the ledger holds, and write its events twice)
        if fd is not None:
            try:
                with self._locked_current(fd) as current:
                    self._append(current, sealed, backfill)
            except (OSError, RetentionError) as exc:
                self._log.error(
                    "audit.file_write_failed",
                    path=str(self.path),
                    error=exc.strerror if isinstance(exc, OSError) else exc.message,
                    hint="committed: the ledger holds these records, and the file catches up "
                    "at the next write that succeeds",
                )
        if not self.log_events:
            return
        everything = not self.alerts_only and self._log.is_enabled_for(logging.INFO)
        if everything or (sealed.alerts and self._log.is_enabled_for(logging.ERROR)):
            try:
                for record in _records(sealed, backfill):
                    alert = is_alert(record["event"])
                    if alert or everything:
                        log = self._log.error if alert else self._log.info
                        log(record["event"], **{k: v for k, v in record.items() if k != "event"})
            except RetentionError as exc:
                self._log.error("audit.log_read_back_failed", chain=sealed.chain, error=exc.message)

    @contextmanager
    def _locked_current(self, fd: int) -> Iterator[int]:
        """`fd` under the file's exclusive lock; when the file was renamed or removed since it
        was opened (log rotation during the transaction), the file now at the path instead, so
        the chain goes on in the current file and a rotated one is never cut or rewritten."""
        assert self.path is not None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if _same_file(fd, self.path):
                yield fd
                return
            current = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                make_private(current, self.path)
                fcntl.flock(current, fcntl.LOCK_EX)
                yield current
            finally:
                os.close(current)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _append(self, fd: int, sealed: Sealed, backfill: Backfill) -> None:
        """Write the lines the file lacks up to the transaction's: those after the file's last
        seq, read back from the ledger in pages (another process's, a crash's gap, the
        transaction's earlier chunks), then the lines held. Lines already in the file (a later
        transaction appended first) are skipped, once the file's last line is found to be the
        ledger's."""
        assert self.path is not None
        _cut_torn_tail(fd, self.path)
        last, raw = last_line_in_file(self.path, sealed.chain) or (0, b"")
        if last >= sealed.first and raw != _ledger_line(sealed, last, backfill):
            self._log.error(
                "audit.file_diverged",
                path=str(self.path),
                chain=sealed.chain,
                file_seq=last,
                ledger_seq=sealed.first,
            )
        if last >= sealed.last:
            return
        for lines in _read_back(sealed, last + 1, backfill):
            _write_all(fd, lines)
        _write_all(fd, sealed.lines[max(0, last + 1 - sealed.held_from) :])
        os.fsync(fd)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        held, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def is_alert(event: str) -> bool:
    """Whether an audit event is a fault an operator must see: logged at error level."""
    return event in ALERT_EVENTS or event.startswith(ALERT_PREFIXES)


@dataclass
class Sealed:
    """What one transaction added to a chain: its seq range, and the records and lines of its
    last batch (earlier ones are read back from the ledger)."""

    chain: str
    first: int
    last: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    alerts: bool = False  # whether any record is one `is_alert` names (worth a read-back)

    def add(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        """Take a newly sealed batch, dropping the one before it."""
        self.alerts = self.alerts or any(is_alert(record["event"]) for record, _ in batch)
        self.records = [record for record, _ in batch]
        self.lines = [line for _, line in batch]
        self.last = self.records[-1]["seq"]

    @property
    def held_from(self) -> int:
        """The first seq whose line is held in memory."""
        return self.last - len(self.lines) + 1


def _ledger_line(sealed: Sealed, seq: int, backfill: Backfill) -> bytes | None:
    """The ledger's line of `seq` on the transaction's chain (None when it has none)."""
    if sealed.held_from <= seq <= sealed.last:
        return sealed.lines[seq - sealed.held_from].encode()
    lines = backfill(sealed.chain, seq, seq)
    return lines[0].encode() if lines else None


def _records(sealed: Sealed, backfill: Backfill) -> Iterator[dict[str, Any]]:
    """Every record of the transaction, in order, the earlier ones read back in pages."""
    for lines in _read_back(sealed, sealed.first, backfill):
        yield from map(json.loads, lines)
    yield from sealed.records


def _read_back(sealed: Sealed, start: int, backfill: Backfill) -> Iterator[list[str]]:
    """Committed lines of the chain from seq `start` up to the batch held in memory, a page
    at a time."""
    for first in range(start, sealed.held_from, BACKFILL_PAGE):
        yield backfill(sealed.chain, first, min(first + BACKFILL_PAGE, sealed.held_from) - 1)


def _write_all(fd: int, lines: list[str]) -> None:
    """Append lines; a short write (disk nearly full) continues where it stopped."""
    data = memoryview("".join(line + "\n" for line in lines).encode())
    while data:
        data = data[os.write(fd, data) :]


def _cut_torn_tail(fd: int, path: Path, block: int = 65536) -> None:
    """Drop a last line a crash left without its newline (it is backfilled whole)."""
    end = os.fstat(fd).st_size
    with open(path, "rb") as handle:
        if end == 0 or (handle.seek(end - 1), handle.read(1))[1] == b"\n":
            return
        position = end
        while position > 0:
            start = max(0, position - block)
            handle.seek(start)
            cut = handle.read(position - start).rfind(b"\n")
            if cut >= 0:
                os.truncate(path, start + cut + 1)
                return
            position = start
    os.truncate(path, 0)  # a single torn line and nothing before it


def last_line_in_file(path: Path, chain: str, block: int = 65536) -> tuple[int, bytes] | None:
    """The last line of `chain` in the file, and its seq, reading backwards from its end."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        tail = b""
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            tail = handle.read(end - start) + tail
            end = start
            lines = tail.split(b"\n")
            complete = lines if start == 0 else lines[1:]
            for raw in reversed(complete):
                seq = _seq_if_chain(raw, chain)
                if seq is not None:
                    return seq, raw
            tail = lines[0] if start else b""
    return None


def _seq_if_chain(raw: bytes, chain: str) -> int | None:
    """The seq of one line when it belongs to `chain`."""
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if isinstance(record, dict) and record.get("chain") == chain:
        seq = record.get("seq")
        return seq if isinstance(seq, int) else None
    return None
