"""Ship captured IDs to the daemon's ingest endpoint from a background thread.

The app only ever appends to an in-memory queue. The thread sends batches; when the daemon
cannot be reached the records go to a spool file (0600, under an exclusive lock), which is
sent, oldest first, as soon as the daemon answers again, in this process or the next.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("retention.capture")
BATCH = 500
LINGER_S = 0.05
RETRY_S = (0.5, 1, 2, 5, 10, 30)


def default_spool() -> Path:
    """`$XDG_STATE_HOME/retention/capture-spool.jsonl` (or ~/.local/state/...)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "retention" / "capture-spool.jsonl"


class Shipper:
    """One background sender per (ingest URL, spool file)."""

    def __init__(self, ingest_url: str, token: str, spool: Path) -> None:
        self.url = ingest_url.rstrip("/") + "/v1/records"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.spool = spool
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="retention-capture", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record; never blocks, never raises."""
        self.queue.put_nowait(record)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (or spool it) before the process exits."""
        self.queue.put_nowait(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        """Drain the spool, then send batches as they come, spooling on failure."""
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            self._drain_spool(http)
            while True:
                batch, stop = self._next_batch()
                if batch and not self._send(http, batch):
                    self._append_spool(batch)
                else:  # sent, or idle: a good moment to send what waits on disk
                    self._drain_spool(http)
                if stop:
                    return

    def _next_batch(self) -> tuple[list[dict[str, Any]], bool]:
        """Up to BATCH records; waits while idle, retrying the spool now and then."""
        wait = RETRY_S[min(self._failures, len(RETRY_S) - 1)] if self._spooled() else None
        try:
            first = self.queue.get(timeout=wait)
        except queue.Empty:
            return [], False
        if first is None:
            return [], True
        batch = [first]
        linger_until = time.monotonic() + LINGER_S  # gather a burst into one request
        while len(batch) < BATCH:
            try:
                item = self.queue.get(timeout=max(0.0, linger_until - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _send(self, http: httpx.Client, batch: list[dict[str, Any]]) -> bool:
        """POST one batch; a 400 drops it (it would never succeed), others keep it."""
        try:
            answer = http.post(self.url, json={"records": batch}, headers=self.headers)
        except httpx.HTTPError:
            self._failures += 1
            return False
        if answer.status_code == 400:
            log.warning(
                "retention capture: the daemon refused %d records: %s",
                len(batch),
                answer.text[:200],
            )
            return True
        ok = answer.status_code < 300
        self._failures = 0 if ok else self._failures + 1
        return ok

    def _spooled(self) -> bool:
        """Whether the spool holds anything."""
        try:
            return self.spool.stat().st_size > 0
        except OSError:
            return False

    def _append_spool(self, batch: list[dict[str, Any]]) -> None:
        """Keep records on disk until the daemon answers."""
        try:
            self.spool.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.spool, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write("".join(json.dumps(r) + "\n" for r in batch))
        except OSError as exc:
            log.warning("retention capture: cannot spool %d IDs: %s", len(batch), exc)

    def _drain_spool(self, http: httpx.Client) -> None:
        """Send the spool's records; truncate it once all were accepted."""
        if not self._spooled():
            return
        try:
            with open(self.spool, "r+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                records = [json.loads(line) for line in handle if line.strip()]
                for start in range(0, len(records), BATCH):
                    if not self._send(http, records[start : start + BATCH]):
                        handle.seek(0)
                        handle.truncate()
                        handle.write("".join(json.dumps(r) + "\n" for r in records[start:]))
                        return
                handle.seek(0)
                handle.truncate()
        except (OSError, ValueError) as exc:
            log.warning("retention capture: cannot read the spool: %s", exc)
