"""Publish committed audit records off the committing thread, in commit order.

Group commit answers each ingest request once the ledger holds its records. Appending the
group's lines to the audit file, and flushing the file to disk, would add a second disk flush
to every request's wait, so `Ledger.write(publish_later=True)` hands the committed records to
this publisher instead: one thread that publishes each transaction in commit order, as
`Ledger.write` would (the file, the log, notifications). The ledger is the source of truth:
lines that a crash keeps out of the file are appended by the next write that publishes
(audit_file.py fills a gap from the ledger before its own lines).
"""

from __future__ import annotations

import queue
import threading

from retention.ledger.audit_file import AuditSink, Backfill, Sealed

WAITING = 64  # transactions queued at most: past that, commits wait for the file (a slow disk)


class Publisher:
    """A thread publishing committed transactions, one after the other, in the order given."""

    def __init__(self, sink: AuditSink, backfill: Backfill, *, waiting: int = WAITING) -> None:
        self._sink, self._backfill = sink, backfill
        self._queue: queue.Queue[Sealed | None] = queue.Queue(maxsize=waiting)
        self._thread = threading.Thread(target=self._run, name="retention-publish", daemon=True)
        self._thread.start()

    def put(self, sealed: Sealed) -> None:
        """Queue one committed transaction's records; waits while `waiting` are queued, so a
        slow disk slows the commits down instead of growing memory."""
        self._queue.put(sealed)

    def drain(self) -> None:
        """Wait until everything queued so far is published."""
        self._queue.join()

    def close(self) -> None:
        """Publish what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        """Publish until told to stop; nothing that fails here stops the thread."""
        while True:
            sealed = self._queue.get()
            try:
                if sealed is None:
                    return
                self._sink.publish_alone(sealed, self._backfill)  # never raises
            finally:
                self._queue.task_done()
