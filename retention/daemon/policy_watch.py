"""Notice a changed policies file without a signal, and wait for a file that lags the ledger.

The daemon polls the policies file's fingerprint (the SHA-256 of its bytes) every
`POLL_EVERY` seconds. Kubernetes updates a mounted ConfigMap by swapping a symlink (`..data`)
to a new folder, so the path stays and its content changes at once; an editor may write a
file in more than one step. A change is acted on once the file reads the same `SETTLE`
seconds later, so a file being written is never judged half-way; a file that is missing
(mid-swap, or removed) keeps the policies in force, with one log line until it is back.

Replicas see a changed ConfigMap at different moments (each node's kubelet refreshes its pods'
files on its own schedule, up to about a minute apart). A replica whose file has not changed
while the ledger carries policies another process applied waits for its file, up to
`BEHIND_GRACE`, instead of applying its older file over them (which would re-plan every open
record twice, and release a hold the newer file placed); meanwhile it does not sweep. Past the
grace its own file wins again, with a warning: the files really differ.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from pathlib import Path

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


class PolicyWatch:
    """What the policies in force were read from, and whether the file has moved on since."""

    def __init__(self, path: Path, seen: str | None = None) -> None:
        self.path = path
        # the fingerprint the policies in force were read from (taken before they were read:
        # a change after that is seen at the next poll)
        self.seen = seen if seen is not None else fingerprint(path)
        self._missing = False
        self.behind_since: datetime | None = None  # waiting for the file since then

    def changed(self) -> bool:
        """Whether the file now holds something else than the policies in force were read
        from, and still did SETTLE seconds later; a missing file is no change (one log line).
        Blocks for SETTLE when it changed: call it from a worker thread."""
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
        if now == self.seen:
            return False
        time.sleep(SETTLE)  # it may still be being written: judge it once it holds still
        return fingerprint(self.path) == now

    def reading(self) -> str | None:
        """The file's fingerprint now, taken just before it is read; pass it to `settled`."""
        return fingerprint(self.path)

    def settled(self, seen: str | None) -> None:
        """The file as `reading` found it is now in force (or was refused for good)."""
        self.seen, self.behind_since = seen, None

    def in_step(self) -> None:
        """The ledger applies the policies in force: nothing to wait for."""
        if self.behind_since is not None:
            log.info("policy.in_step", source=str(self.path))
        self.behind_since = None

    def waits_for_file(self, now: datetime) -> bool:
        """The ledger carries policies that this file, unchanged since it was read, does not
        give: whether to wait for the file (True, for up to BEHIND_GRACE) rather than apply it
        over them (False: the file changed since, or the grace is over)."""
        if fingerprint(self.path) != self.seen:
            self.behind_since = None
            return False
        if self.behind_since is None:
            self.behind_since = now
            log.warning(
                "policy.behind_ledger",
                source=str(self.path),
                hint="another process applied other policies to the ledger; this daemon "
                "waits for its policies file to show them and does not sweep meanwhile "
                f"(at most {int(BEHIND_GRACE.total_seconds())} s)",
            )
        if now - self.behind_since < BEHIND_GRACE:
            return True
        log.warning(
            "policy.ledger_overruled",
            source=str(self.path),
            hint="the policies file still differs from what the ledger applies: this "
            "daemon's file is applied; check that every replica reads the same file",
        )
        self.behind_since = None
        return False
