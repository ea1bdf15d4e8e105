"""A fault repeated in a flood becomes one notification a minute, not one per occurrence (the
audit file on a full disk fails at every transaction of a busy ingest).

The first occurrence of a fault (its name, `path` and `error`) is sent at once. Those that
follow within the interval are counted; when it ends, one more is sent, the latest of them
with `repeated` (how many came) and `interval_s`, and a new interval starts. An interval in
which none came ends the quiet: the next is sent at once again. Closing sends what is counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retention.core.vocabulary import Notice

INTERVAL_S = 60.0

Key = tuple[str, str, str]  # the fault's name, path and error


@dataclass
class _Quiet:
    """One fault inside its interval: how many came since it was last sent, the latest one's
    fields, and the timer that ends the interval."""

    name: Notice
    fields: dict[str, Any]
    count: int = 0
    timer: threading.Timer | None = field(default=None, repr=False)


class NoticeThrottle:
    """Passes faults to `send`, at most one per fault per `interval` seconds, with a count."""

    def __init__(
        self, send: Callable[[Notice, dict[str, Any]], None], interval: float = INTERVAL_S
    ) -> None:
        self._send, self._interval = send, interval
        self._lock = threading.Lock()
        self._quiet: dict[Key, _Quiet] = {}
        self._closed = False

    def note(self, name: Notice, fields: dict[str, Any]) -> None:
        """One occurrence of a fault: sent now, or counted when it was sent less than an
        interval ago."""
        key = (str(name), str(fields.get("path")), str(fields.get("error")))
        with self._lock:
            quiet = self._quiet.get(key)
            if quiet is not None:
                quiet.count += 1
                quiet.fields = fields
                return
            if not self._closed:
                self._start(key, _Quiet(name, fields))
        self._send(name, fields)

    def close(self) -> None:
        """Stop the timers and send what each fault counted since it was last sent."""
        with self._lock:
            self._closed = True
            ending = list(self._quiet.values())
            self._quiet.clear()
        for quiet in ending:
            if quiet.timer is not None:
                quiet.timer.cancel()
            if quiet.count:
                self._send(quiet.name, self._summary(quiet))

    def _start(self, key: Key, quiet: _Quiet) -> None:
        """Under the lock: start the fault's interval."""
        quiet.timer = threading.Timer(self._interval, self._end, args=(key,))
        quiet.timer.daemon = True
        quiet.timer.name = "notify throttle"
        self._quiet[key] = quiet
        quiet.timer.start()

    def _end(self, key: Key) -> None:
        """An interval ended: send the count of what came in it and start the next, or end
        the quiet when nothing came."""
        with self._lock:
            quiet = self._quiet.pop(key, None)
            if quiet is None or not quiet.count:
                return
            summary = self._summary(quiet)
            if not self._closed:
                self._start(key, _Quiet(quiet.name, quiet.fields))
        self._send(quiet.name, summary)

    def _summary(self, quiet: _Quiet) -> dict[str, Any]:
        """The latest occurrence's fields, with how many came and over how long."""
        return {**quiet.fields, "repeated": quiet.count, "interval_s": self._interval}
