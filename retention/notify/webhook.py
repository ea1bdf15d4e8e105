"""A webhook sink: each notification POSTed as JSON, in order, through its spool.

The worker writes each batch it takes to the spool, then delivers from the spool's head: a 2xx
takes a line off; a refusal of the line itself (400, 413, 415, 422) or a redirect (3xx, never
followed) drops it, logged and counted; anything else (no connection, a timeout, 401, 429,
5xx) stops delivery until the next try, `retry_interval` later, doubling up to `retry_max`. A
full queue (the worker is held up by a slow receiver) goes to the spool from the committing
thread, behind what was queued, so the order holds. Only the one process holding the spool's
drain lock delivers from it. Delivery is at least once from the moment a notification is
spooled; before that it is queued in memory while the worker is busy delivering (about a
second, up to `timeout` while a request hangs) and a crash loses it: the trail has the event.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from retention import __version__
from retention.config.notify_settings import NotifySettings
from retention.errors import ConfigError
from retention.notify.sink import CAPACITY, Sink, log
from retention.notify.spool import Spool
from retention.redaction import redact, register_secret

BATCH = 100  # lines read from the spool at a time
SLICE_S = 1.0  # longest a delivery run goes before the worker takes new notifications
REFUSED = frozenset({400, 413, 415, 422})  # the receiver refuses this line: it is dropped
IDLE_LOOK_S = 30.0  # an idle worker looks at the spool this often (another process's lines)
_REDIRECT_HINT = (
    "the receiver answered with a redirect, which is never followed (it could take the token "
    "elsewhere): this notification is dropped (the audit trail has the event); set `webhook` "
    "to the URL the receiver redirects to"
)


class WebhookSink(Sink):
    """POSTs notifications to one URL, spooling what it cannot send yet."""

    kind = "webhook"

    def __init__(self, settings: NotifySettings, *, capacity: int = CAPACITY) -> None:
        super().__init__(settings, capacity=capacity)
        assert settings.webhook is not None and settings.spool_file is not None
        self.url = settings.webhook
        register_secret(self.url)  # its path or query may hold a token: never in a log line
        settings.token()  # a token that cannot be read stops start-up (exit 2)
        self.spool = Spool(settings.spool_file, settings.spool_max_bytes)
        self._http = httpx.Client(
            timeout=settings.timeout.total_seconds(), trust_env=False, follow_redirects=False
        )
        self._retry_at = 0.0  # monotonic time of the next try; 0: now
        self._failures = 0  # tries failed in a row
        self._full_since = 0  # notifications dropped since the spool was last not full
        self._memory: list[dict[str, Any]] = []  # taken while the spool could not be written

    def waiting(self) -> int:
        """Notifications not delivered yet: queued, and in the spool."""
        return len(self._queue) + len(self._memory) + self.spool.waiting()

    def _settled(self) -> bool:
        """Nothing queued or in hand, and the spool empty or waiting for a receiver away."""
        return super()._settled() and (not self._due() or self._failures > 0)

    def _due(self) -> bool:
        """The spool holds lines and the next try is due."""
        return time.monotonic() >= self._retry_at and (
            bool(self._memory) or self.spool.has_waiting()
        )

    def _wait_s(self) -> float:
        """Until the next try while one is scheduled; else a look now and then for lines
        another process spooled."""
        left = self._retry_at - time.monotonic()
        return (
            max(0.01, left)
            if left > 0
            else min(IDLE_LOOK_S, self.settings.retry_max.total_seconds())
        )

    def _take(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Spool the batch, under the queue's lock (an overflow spools behind it, not before)."""
        if batch:
            self._spool(batch)
        return []

    def _overflow(self, message: dict[str, Any]) -> None:
        """The queue is full: spool it and what waits before it, in order (the committing
        thread writes a file; it never waits for the receiver)."""
        batch = [*self._queue, message]
        self._queue.clear()
        self._spool(batch)

    def _abandon(self, left: list[dict[str, Any]]) -> None:
        """At close: spooled, for the next process to send."""
        self._spool(left)

    def _spool(self, batch: list[dict[str, Any]]) -> None:
        """Write notifications to the spool; those it has no room for are dropped and counted
        (one warning a run); a spool that cannot be written keeps them in memory, sent
        directly."""
        lines = [json.dumps(message, separators=(",", ":")) for message in batch]
        try:
            kept = self.spool.append(lines)
        except OSError as exc:
            self._warn_once(
                "notify.spool_failed",
                f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc.strerror),
                hint="notifications are kept in memory only; fix the spool_file's folder",
            )
            room = max(0, self.capacity - len(self._memory))
            self._memory.extend(batch[:room])
            self._lost(len(batch) - room)
            return
        self._lost(len(batch) - kept)

    def _lost(self, count: int) -> None:
        """Count notifications the spool had no room for; warn at the first of a run."""
        if count <= 0:
            return
        if not self._full_since:
            log.warning(
                "notify.spool_full",
                sink=self.name,
                max_bytes=self.settings.spool_max_bytes,
                hint="the oldest are kept; new notifications are dropped (the audit trail has "
                "every event) until the receiver takes those that wait",
            )
        self._full_since += count
        self.dropped += count

    def _work(self, batch: list[dict[str, Any]]) -> None:
        """Deliver what waits, when a try is due."""
        if time.monotonic() < self._retry_at:
            return
        if self._memory:
            self._send_memory()
            if self._failures:
                return
        try:
            with self.spool.draining() as mine:
                if not mine:  # another process delivers this spool: look again later
                    wait = self.settings.retry_interval.total_seconds()
                    self._retry_at = time.monotonic() + wait
                    return
                if not self._deliver_spool() and self._due():
                    # bytes wait that make no line yet (another process mid-append): look
                    # again a retry_interval later rather than spin
                    wait = self.settings.retry_interval.total_seconds()
                    self._retry_at = time.monotonic() + wait
        except OSError as exc:  # the spool's folder went away or read-only: tried again later
            self._failed(f"spool {exc.filename or self.spool.path}: {exc.strerror or exc}")

    def _deliver_spool(self) -> bool:
        """Send from the spool's head, in order, for up to SLICE_S; stop at a failure. Whether
        any line left the spool."""
        until = time.monotonic() + SLICE_S
        delivered = advanced = 0
        while time.monotonic() < until and not self._stopping:
            lines = self.spool.peek(BATCH)
            if not lines:
                break
            for line, end in lines:
                if line and not self._post(line):
                    self.spool.tidy()
                    return advanced > 0
                self.spool.advance(end)
                advanced += 1
                delivered += bool(line)
            self.spool.tidy()
        if delivered and self._problem is not None:
            log.info("notify.recovered", sink=self.name, delivered=delivered)
            self._problem = None
        if self._full_since and not self.spool.has_waiting():
            log.warning("notify.spool_emptied", sink=self.name, dropped=self._full_since)
            self._full_since = 0
        return advanced > 0

    def _send_memory(self) -> None:
        """Send what a spool that could not be written left in memory."""
        while self._memory:
            if not self._post(json.dumps(self._memory[0], separators=(",", ":"))):
                return
            self._memory.pop(0)

    def _post(self, line: str) -> bool:
        """POST one line: True when it is done with (taken, or refused and dropped), False
        when it must be tried again (the next try is scheduled)."""
        try:
            message = json.loads(line)
            key = message.get("idempotency_key") if isinstance(message, dict) else None
        except ValueError:  # a torn or foreign line: nothing to send
            log.warning("notify.spool_line_skipped", sink=self.name)
            return True
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"retention/{__version__}",
        }
        if isinstance(key, str):
            headers["Idempotency-Key"] = key
        try:
            token = self.settings.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            answer = self._http.post(self.url, content=line.encode(), headers=headers)
        except ConfigError as exc:  # the token file or variable went bad since start
            return self._failed(exc.message)
        except Exception as exc:  # no connection, a timeout, TLS: httpx's words, redacted
            return self._failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if 200 <= answer.status_code < 300:
            self.sent += 1
            self._failures = 0
            return True
        if answer.status_code in REFUSED or 300 <= answer.status_code < 400:
            self.failed += 1
            self.dropped += 1
            log.error(
                "notify.refused",
                sink=self.name,
                http_status=answer.status_code,
                notification=message.get("event") if isinstance(message, dict) else None,
                hint=_REDIRECT_HINT
                if answer.status_code < 400
                else "the receiver refused this notification; it is dropped (the audit trail "
                "has the event)",
            )
            return True
        return self._failed(f"HTTP {answer.status_code}")

    def _trouble(self, event: str, exc: BaseException, lost: int) -> None:
        """A bug of ours while delivering: logged, and the next try waits like after a
        failure (the line stays in the spool)."""
        super()._trouble(event, exc, lost)
        self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, error: str) -> bool:
        """Count a failed try and schedule the next: `retry_interval`, doubling each time up
        to `retry_max`."""
        self.failed += 1
        self._failures += 1
        first = self.settings.retry_interval.total_seconds()
        delay = min(self.settings.retry_max.total_seconds(), first * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        error = redact(error)
        if error != self._problem:
            self._problem = error
            log.warning("notify.failed", sink=self.name, error=error, retry_in_s=delay)
        return False

    def _shut(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
