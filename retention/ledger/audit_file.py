"""Publish committed audit records: append them to `audit.file` and log them through structlog.

The database is the source of truth. After each commit the file is appended under an
exclusive lock, held only for the append: each writer writes the chain's lines the file lacks,
from the file's last seq up to its transaction's, read back from the ledger when another
process committed them (or a crash kept them out). A writer that finds its lines already there
(a later transaction appended them first) writes nothing, so the file holds each seq once, in
chain order, however the appends of several processes interleave.

With `audit.rotate_bytes` or `audit.rotate_interval` the live file is rotated under that same
lock, before lines are appended to a file that is due (`audit_rotation.py`): the chains go on in
the new live file, each from where the rotated files stopped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from retention.core.vocabulary import Event, Notice
from retention.errors import AuditError, RetentionError
from retention.files import make_private
from retention.ledger.audit_rotation import (
    RotationRule,
    RotationState,
    current_state,
    first_ts,
    prune,
    rotate_file,
    state_path,
)
from retention.logs import get_logger

BACKFILL_PAGE = 10_000  # lines read back from the ledger at a time
ROTATION_RETRY_S = 60.0  # after a rotation failed, the trail goes on in the live file this long

# every other audit event is logged at info
ALERT_EVENTS = frozenset({Event.RESPONSE_FAILED})
ALERT_PREFIXES = ("provider.",)
# one per ID recorded, thousands a second at fleet rates: the daemon leaves them out of its log
# unless -v (the trail holds each, and /metrics counts them), or it would log nothing else
BULK_EVENTS = frozenset({Event.RESPONSE_RECORDED})
CATCHES_UP = (  # the hint of a fault after the commit
    "committed: the ledger holds these records, and the file catches up at the next write "
    "that succeeds"
)

Backfill = Callable[[str, int, int], list[str]]  # (chain, first_seq, last_seq) -> lines


class Watcher(Protocol):
    """Who hears of committed records and of the file's failures: the notifier (notify/)."""

    def wants(self, event: str) -> bool:
        """Whether records of this event are wanted."""
        ...

    def offer(self, record: dict[str, Any]) -> None:
        """Take one committed record; never raises, never waits."""
        ...

    def notice(self, name: Notice, **fields: Any) -> None:
        """Take one logged fault; never raises, never waits."""
        ...


class AuditSink:
    """Where sealed records go after their transaction commits."""

    watcher: Watcher | None = None  # told of committed records (notifications), when set

    def __init__(
        self,
        path: Path | None,
        *,
        log_events: bool = True,
        alerts_only: bool = False,
        unlogged: frozenset[str] = frozenset(),
        rotation: RotationRule | None = None,
    ) -> None:
        self.path = path
        self.log_events = log_events
        self.alerts_only = alerts_only  # a one-shot command: the events are in the ledger
        self.unlogged = unlogged  # events never logged one by one (the daemon's BULK_EVENTS)
        self.rotation = rotation or RotationRule()
        self._log = get_logger("retention.audit")
        # the live file's first `ts`, cached with its (device, inode) and the size last seen
        self._first_ts: tuple[tuple[int, int], int, str | None] | None = None
        self._rotation_paused_until = 0.0

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
                with self._locked_current(fd) as held:
                    self._append(held, sealed, backfill)
            except (OSError, RetentionError) as exc:
                self._fault(
                    Notice.AUDIT_FILE_WRITE_FAILED,
                    operation="append",
                    path=str(self.path),
                    error=exc.strerror if isinstance(exc, OSError) else exc.message,
                    hint=CATCHES_UP,
                )
        if self.watcher is not None:
            self._tell(self.watcher, sealed, backfill)
        if not self.log_events:
            return
        everything = not self.alerts_only and self._log.is_enabled_for(logging.INFO)
        if everything and sealed.events <= self.unlogged:
            everything = False  # nothing of it is logged but alerts: read nothing back
        if everything or (sealed.alerts and self._log.is_enabled_for(logging.ERROR)):
            try:
                for record in _records(sealed, backfill):
                    alert = is_alert(record["event"])
                    if alert or (everything and record["event"] not in self.unlogged):
                        log = self._log.error if alert else self._log.info
                        log(record["event"], **{k: v for k, v in record.items() if k != "event"})
            except RetentionError as exc:
                self._log.error("audit.log_read_back_failed", chain=sealed.chain, error=exc.message)

    def publish_alone(self, sealed: Sealed, backfill: Backfill) -> None:
        """`publish` for a transaction committed without the file open (by the publisher
        thread, ledger/publisher.py): the file is opened here. Never raises: a file that cannot
        be opened is a fault logged as an append's is, and the events are logged all the same."""
        try:
            with self.opened() as fd:
                self.publish(fd, sealed, backfill)
            return
        except RetentionError as exc:
            error = exc.message
        except Exception as exc:  # a bug of ours: the thread publishing must go on
            error = f"{type(exc).__name__}: {exc}"
        self._fault(
            Notice.AUDIT_FILE_WRITE_FAILED,
            operation="open",
            path=str(self.path),
            error=error,
            hint=CATCHES_UP,
        )
        self.publish(None, sealed, backfill)

    def _tell(self, watcher: Watcher, sealed: Sealed, backfill: Backfill) -> None:
        """Hand the watcher the committed records it wants, in order (the transaction's
        earlier batches read back only when it wants an event among them)."""
        if not any(watcher.wants(event) for event in sealed.events):
            return
        try:
            for record in _records(sealed, backfill):
                if watcher.wants(record["event"]):
                    watcher.offer(record)
        except RetentionError as exc:
            self._log.error("audit.notify_read_back_failed", chain=sealed.chain, error=exc.message)

    def _fault(self, name: Notice, **fields: Any) -> None:
        """Log a failure of the file at error level, and tell the watcher."""
        self._log.error(name, **fields)
        if self.watcher is not None:
            self.watcher.notice(name, **fields)

    @contextmanager
    def _locked_current(self, fd: int) -> Iterator[_Held]:
        """`fd` under the file's exclusive lock; when the file was renamed or removed since it
        was opened (rotated by another process during the transaction), the file now at the
        path instead, so the chain goes on in the current file and a rotated one is never cut
        or rewritten. Locks are taken from older files to newer ones, never the other way."""
        assert self.path is not None
        with ExitStack() as stack:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
            held = _Held(stack, fd)
            if not _same_file(fd, self.path):
                held.open_current(self.path)
            yield held

    def _append(self, held: _Held, sealed: Sealed, backfill: Backfill) -> None:
        """Write the lines the file lacks up to the transaction's: those after the chain's last
        seq in the trail, read back from the ledger a page at a time (another process's, a
        crash's gap, the transaction's earlier chunks), then the lines held. Lines already in
        the file (a later transaction appended first) are skipped, once the file's last line
        is found to be the ledger's. A file due for rotation is rotated before lines go in."""
        assert self.path is not None
        _cut_torn_tail(held.fd, self.path)
        last, raw, digest = self._written(sealed.chain)
        if last >= sealed.first and not _agrees(_ledger_line(sealed, last, backfill), raw, digest):
            self._fault(
                Notice.AUDIT_FILE_DIVERGED,
                path=str(self.path),
                chain=sealed.chain,
                file_seq=last,
                ledger_seq=sealed.first,
            )
        while last < sealed.last:
            if self._rotated(held, sealed):
                _cut_torn_tail(held.fd, self.path)
                last = self._written(sealed.chain)[0]  # others may have written there first
                continue
            if last + 1 < sealed.held_from:
                lines = backfill(
                    sealed.chain, last + 1, min(last + BACKFILL_PAGE, sealed.held_from - 1)
                )
                if not lines:
                    raise AuditError(f"the ledger lacks chain {sealed.chain} after seq {last}")
            else:
                lines = sealed.lines[last + 1 - sealed.held_from :]
            _write_all(held.fd, lines)
            last += len(lines)
        os.fsync(held.fd)

    def _written(self, chain: str) -> tuple[int, bytes | None, str | None]:
        """The chain's last seq in the trail, with that line (in the live file) or its hash
        (when the live file has none of the chain yet: in the rotation state); 0 when the
        trail has none."""
        assert self.path is not None
        found = last_line_in_file(self.path, chain)
        if found is not None:
            return found[0], found[1], None
        head = self._state().heads.get(chain)
        return (head[0], None, head[1]) if head else (0, None, None)

    def _state(self) -> RotationState:
        """The rotation state, brought up to date from the rotated files when it was lost or
        is older than they are (logged once written again)."""
        assert self.path is not None
        state, read = current_state(self.path)
        if read and state.kept:
            self._log.warning(
                "audit.rotation_state_rebuilt",
                path=str(state_path(self.path)),
                files=len(read),
                last_rotated=state.number,
                chains=len(state.heads),
            )
        return state

    def _rotated(self, held: _Held, sealed: Sealed) -> bool:
        """Rotate the live file when it is due, and hold the new one; False when it is not due
        or the rotation failed (logged; the trail goes on in the live file, and rotation is
        tried again a minute later)."""
        assert self.path is not None
        if not self.rotation.active or time.monotonic() < self._rotation_paused_until:
            return False
        reason = self.rotation.reason(
            os.fstat(held.fd).st_size,
            self._first_record_ts(held.fd),
            sealed.records[-1].get("ts") if sealed.records else None,
        )
        if reason is None:
            return False
        try:
            done = rotate_file(self.path, held.fd, self._state())
        except (OSError, RetentionError) as exc:
            self._rotation_paused_until = time.monotonic() + ROTATION_RETRY_S
            self._fault(
                Notice.AUDIT_FILE_WRITE_FAILED,
                operation="rotate",
                path=str(self.path),
                error=exc.strerror if isinstance(exc, OSError) else exc.message,
                hint="the trail goes on in the live file; rotation is tried again in a minute",
            )
            return False
        self._log.info(
            "audit.rotated",
            path=str(self.path),
            to=str(done.path),
            bytes=done.size,
            reason=reason,
        )
        held.open_current(self.path)
        if self.rotation.keep is not None:
            for old, error in prune(self.path, self.rotation.keep):
                if error is None:
                    self._log.info("audit.pruned", path=str(old), keep=self.rotation.keep)
                else:
                    self._log.warning(
                        "audit.file_prune_failed", path=str(old), error=error.strerror
                    )
        return True

    def _first_record_ts(self, fd: int) -> str | None:
        """The `ts` of the live file's first record, read once per file, and again when the
        file is smaller than when last looked at (a torn line cut, or the file truncated)."""
        assert self.path is not None
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        cached = self._first_ts
        if cached is None or cached[0] != key or cached[1] > stat.st_size or cached[2] is None:
            ts = first_ts(fd, self.path)
        else:
            ts = cached[2]
        self._first_ts = (key, stat.st_size, ts)
        return ts


class _Held:
    """The file a publish appends to, open and locked: the one opened before the transaction,
    or the one at the path since (after a rotation); each opened here is closed at the end."""

    def __init__(self, stack: ExitStack, fd: int) -> None:
        self.stack, self.fd = stack, fd

    def open_current(self, path: Path) -> None:
        """Open and lock the file now at `path` (made if missing), and append there; when it
        was rotated while this waited for its lock, the one at the path since."""
        while True:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self.stack.callback(os.close, fd)
            make_private(fd, path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, path):
                self.fd = fd
                return
            fcntl.flock(fd, fcntl.LOCK_UN)  # never written to: only the file at the path is


def _agrees(ledger: bytes | None, raw: bytes | None, digest: str | None) -> bool:
    """Whether the trail's last line of a chain (or its hash, from the rotation state) is the
    ledger's line of that seq."""
    if raw is not None:
        return raw == ledger
    try:
        return ledger is not None and json.loads(ledger).get("hash") == digest
    except (ValueError, AttributeError):
        return False


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
    events: set[str] = field(default_factory=set)  # every event name of the transaction

    def add(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        """Take a newly sealed batch, dropping the one before it."""
        self.alerts = self.alerts or any(is_alert(record["event"]) for record, _ in batch)
        self.events.update(record["event"] for record, _ in batch)
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
