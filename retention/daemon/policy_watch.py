"""Notice a changed policies file without a signal, and wait for a file that lags a replica's.

The daemon polls the policies file's fingerprint (the SHA-256 of its bytes) every
`POLL_EVERY` seconds. Kubernetes updates a mounted ConfigMap by swapping a symlink (`..data`)
to a new folder, so the path stays and its content changes at once; an editor may write a
file in more than one step. A change is acted on once the file reads the same `SETTLE`
seconds later, so a file being written is never judged half-way; a file that is missing
(mid-swap, or removed) keeps the policies in force, with one log line until it is back. A
file that was refused is not read again by the poll until its content changes (it is not the
file the policies in force came from: that stays the last good one).

Replicas see a changed ConfigMap at different moments (each node's kubelet refreshes its pods'
files on its own schedule, up to about a minute apart). Before a daemon applies its file it
records in the ledger which file that is (`FileRecord`: path, fingerprint, when it was read).
A daemon whose own file has not changed since it read it, and whose ledger applies other
policies, waits for its file (up to `BEHIND_GRACE`, sweeping nothing) only when that record
shows a newer copy of its own file: the same path, other bytes, read after this daemon read
its own. Anything else (a command run with another policies file, a CronJob, holds placed in
the ledger, a replica whose file is older) is no reason to wait: the daemon applies its own
policies at once, with `policy.ledger_overruled` when they replace other ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from retention.core.times import format_time, parse_time
from retention.core.vocabulary import MetaKey
from retention.errors import InputError
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.logs import get_logger

log = get_logger("retention.daemon")
POLL_EVERY = 2.0  # seconds between two looks at the policies file
SETTLE = 0.5  # a changed file must read the same this much later (not being written)
BEHIND_GRACE = timedelta(minutes=3)  # how long a replica waits for its file to catch up


def fingerprint(path: Path) -> str | None:
    """The SHA-256 of the file's bytes, why it cannot be read, or None when it is missing."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:  # a dangling symlink too: a ConfigMap's `..data` mid-swap
        return None
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


@dataclass(frozen=True)
class Reading:
    """The policies file's fingerprint, and when it was taken (just before the file is read)."""

    fingerprint: str | None
    at: datetime


@dataclass(frozen=True)
class FileRecord:
    """Which policies file a daemon last applied to the ledger (meta `policy_file`): its path
    as configured (symlinks not followed: a ConfigMap's target folder changes at each swap),
    the SHA-256 of its bytes, and when that daemon read it."""

    path: str
    sha256: str
    read_at: datetime

    def as_json(self) -> str:
        """The meta value."""
        return json.dumps(
            {"path": self.path, "sha256": self.sha256, "read_at": format_time(self.read_at)}
        )

    @classmethod
    def of_json(cls, text: str | None) -> FileRecord | None:
        """The record a meta value holds; None when there is none or it cannot be read (no
        evidence, so nothing is waited for)."""
        try:
            doc = json.loads(text) if text else None
            if not isinstance(doc, dict):
                return None
            return cls(str(doc["path"]), str(doc["sha256"]), parse_time(doc["read_at"]))
        except (ValueError, KeyError, TypeError, InputError):
            return None


def recorded_file(conn: Connection) -> FileRecord | None:
    """The file a daemon last applied to this ledger, as it recorded it."""
    return FileRecord.of_json(queries.get_meta(conn, MetaKey.POLICY_FILE))


def record_file(ledger: Ledger, record: FileRecord) -> None:
    """Record that this file is about to be applied, unless the ledger already names the same
    path and bytes (one read; a write only when another file or version was recorded)."""
    with ledger.read() as conn:
        known = recorded_file(conn)
    if known is not None and (known.path, known.sha256) == (record.path, record.sha256):
        return
    with ledger.transaction() as conn:
        queries.set_meta(conn, MetaKey.POLICY_FILE, record.as_json())


class PolicyWatch:
    """What the policies in force were read from, and whether the file has moved on since."""

    def __init__(self, path: Path, clock: Callable[[], datetime], seen: str | None = None) -> None:
        self.path, self.clock = path, clock
        self.where = os.path.abspath(path)  # as a FileRecord names it
        # the fingerprint the policies in force were read from (taken before they were read:
        # a change after that is seen at the next poll), and when
        self.seen = seen if seen is not None else fingerprint(path)
        self.seen_at = clock()
        self.refused: str | None = None  # the bad file last refused: the poll leaves it be
        self._missing = False
        self.behind_since: datetime | None = None  # waiting for the file since then

    def changed(self) -> bool:
        """Whether the file now holds something else than the policies in force were read
        from (and than the file last refused), and still did SETTLE seconds later; a missing
        file is no change (one log line). Blocks for SETTLE when it changed: call it from a
        worker thread."""
        now = fingerprint(self.path)
        if now is None:
            if not self._missing:
                self._missing = True
                log.warning(
                    "policy.file_missing",
                    source=str(self.path),
                    hint="the policies in force stay until the file is back",
                )
            return False
        self._missing = False
        if now in (self.seen, self.refused):
            return False
        time.sleep(SETTLE)  # it may still be being written: judge it once it holds still
        return fingerprint(self.path) == now

    def reading(self) -> Reading:
        """The file's fingerprint now, taken just before it is read; pass it to `settled` or
        `refuse`."""
        return Reading(fingerprint(self.path), self.clock())

    def record(self, reading: Reading | None = None) -> FileRecord | None:
        """What to record in the ledger before applying the file as `reading` found it (the
        policies in force when not given); None when it could not be read."""
        reading = self._first(reading or Reading(self.seen, self.seen_at))
        if reading.fingerprint is None or reading.fingerprint.startswith("unreadable"):
            return None
        return FileRecord(self.where, reading.fingerprint, reading.at)

    def settled(self, reading: Reading) -> None:
        """The file as `reading` found it is now in force."""
        reading = self._first(reading)
        self.seen, self.seen_at = reading.fingerprint, reading.at
        self.refused, self.behind_since = None, None

    def _first(self, reading: Reading) -> Reading:
        """`reading`, dated when these bytes were first read (reading the same file again,
        as an overrule does, makes it no newer a copy than it was)."""
        if reading.fingerprint == self.seen:
            return Reading(self.seen, self.seen_at)
        return reading

    def refuse(self, reading: Reading) -> None:
        """The file as `reading` found it was refused: the policies in force still come from
        the last good one (so it is no file to wait for), and the poll does not read it again
        until it changes."""
        self.refused = reading.fingerprint

    def in_step(self) -> None:
        """The ledger applies the policies in force: nothing to wait for."""
        if self.behind_since is not None:
            log.info("policy.in_step", source=str(self.path))
        self.behind_since = None

    def newer_copy(self, applied: FileRecord | None) -> bool:
        """Whether `applied` (what a daemon recorded applying) is a newer copy of this file:
        the same path, other bytes, read after this daemon read its own."""
        return (
            applied is not None
            and applied.path == self.where
            and applied.sha256 != self.seen
            and applied.read_at > self.seen_at
        )

    def waits_for_file(self, applied: FileRecord | None) -> bool:
        """The ledger applies policies that the policies in force do not give: whether to wait
        for this file (True, for up to BEHIND_GRACE) rather than apply it over them (False).
        Only a file unchanged since it was read waits, and only for a newer copy of itself
        (`newer_copy`): never for a command's or another path's policies."""
        if fingerprint(self.path) != self.seen or not self.newer_copy(applied):
            self.behind_since = None
            return False
        now = self.clock()
        if self.behind_since is None:
            self.behind_since = now
            log.warning(
                "policy.behind_ledger",
                source=str(self.path),
                hint="another replica applied a newer copy of this policies file; this daemon "
                "waits for its own copy to show it and does not sweep meanwhile "
                f"(at most {int(BEHIND_GRACE.total_seconds())} s)",
            )
        if now - self.behind_since < BEHIND_GRACE:
            return True
        self.behind_since = None
        return False
