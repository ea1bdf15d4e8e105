"""The notifier: hears of every committed audit record (the ledger's audit sink hands them
over after commit) and of the faults a process logs (`Notice`), and passes those a sink wants
to that sink's queue. It never raises and never waits: each sink's own thread delivers."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retention.config.notify_settings import NotifySettings
from retention.core.vocabulary import Notice
from retention.notify.message import from_notice, from_record
from retention.notify.sink import Sink, log
from retention.notify.syslog import SyslogSink
from retention.notify.throttle import INTERVAL_S, NoticeThrottle
from retention.notify.webhook import WebhookSink

if TYPE_CHECKING:
    from retention.ledger.ledger import Ledger

CLOSE_WAIT_S = 5.0  # how long a closing process waits for its notifications to go out


@dataclass(frozen=True, slots=True)
class Figures:
    """One sink's counts, for /metrics."""

    name: str
    kind: str
    sent: int
    failed: int
    dropped: int
    waiting: int


class Notifier:
    """Every configured sink. Building one reads each webhook's token: a token that cannot be
    read is a ConfigError (exit 2) before anything runs."""

    def __init__(
        self, settings: Iterable[NotifySettings], *, notice_interval: float = INTERVAL_S
    ) -> None:
        self.sinks: list[Sink] = [
            WebhookSink(s) if s.webhook is not None else SyslogSink(s) for s in settings
        ]
        self._ledger: Ledger | None = None
        # a fault repeated (the audit file failing at every transaction): one a minute
        self._throttle = NoticeThrottle(self._send_notice, notice_interval)
        self._closed = False

    def start(self, ledger: Ledger) -> None:
        """Start the sinks' threads and hear of what `ledger` commits from now on."""
        if not self.sinks or self._ledger is not None:
            return
        for sink in self.sinks:
            sink.start()
        ledger.sink.watcher = self
        self._ledger = ledger

    def wants(self, event: str) -> bool:
        """Whether any sink takes events of this name."""
        return any(sink.wants(event) for sink in self.sinks)

    def offer(self, record: dict[str, Any]) -> None:
        """A committed audit record: queued for each sink that wants it."""
        self._hand(str(record.get("event")), lambda: from_record(record))

    def notice(self, name: Notice, **fields: Any) -> None:
        """A fault this process logged (`error=` and details): queued likewise, at once the
        first time, then at most once a minute with a count while it repeats (the same name,
        `path` and `error`)."""
        if not self.wants(str(name)):
            return
        try:
            self._throttle.note(name, fields)
        except Exception as exc:  # a bug of ours (or no thread left) must never fail a caller
            log.error("notify.internal_error", event=str(name), error=str(exc), exc_info=exc)

    def flush(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Wait up to `timeout` seconds for what is queued to be sent (or spooled while a
        receiver is away)."""
        return all(sink.flush(timeout) for sink in self.sinks)

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Stop hearing, send the counts of repeated faults, flush within `timeout` seconds,
        stop the threads; a webhook's unsent notifications stay in its spool for the next
        process. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._throttle.close()
        if self._ledger is not None and self._ledger.sink.watcher is self:
            self._ledger.sink.watcher = None
        self._ledger = None
        deadline = time.monotonic() + timeout  # the sinks' threads flush side by side
        for sink in self.sinks:
            sink.close(max(0.1, deadline - time.monotonic()))

    def figures(self) -> list[Figures]:
        """Each sink's counts."""
        return [
            Figures(s.name, s.kind, s.sent, s.failed, s.dropped, s.waiting()) for s in self.sinks
        ]

    def _send_notice(self, name: Notice, fields: dict[str, Any]) -> None:
        """Queue one fault's notification (what the throttle lets through)."""
        self._hand(str(name), lambda: from_notice(name, **fields))

    def _hand(self, event: str, build: Any) -> None:
        """Queue the message `build` makes for every sink that wants `event`; never raises."""
        try:
            message = None
            for sink in self.sinks:
                if sink.wants(event):
                    message = message or build()
                    sink.offer(message)
        except Exception as exc:  # a bug of ours must never fail a committed transaction
            log.error("notify.internal_error", event=event, error=str(exc), exc_info=exc)
