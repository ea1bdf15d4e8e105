"""Log lines about a flood, at most one per event per interval, with a count of each reason.

A thousand timed-out connections or failed accepts a second must not become a thousand log
lines (issue 13: 45 MB of "Too many open files" in 30 s). The first occurrence of an event is
logged at once; what follows within the interval is counted and logged as one line when the
interval ends, and the next interval starts only if something was counted.
"""

from __future__ import annotations

import asyncio
import errno
from collections import Counter
from typing import Any

INTERVAL_S = 60.0

# accept() and socket() failures that mean "out of a resource", not "this one peer failed"
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ThrottledLog:
    """At most one line per event name per `interval` seconds; each line counts its reasons."""

    def __init__(self, logger: Any, interval: float = INTERVAL_S) -> None:
        self._log, self._interval = logger, interval
        self._counts: dict[str, Counter[str]] = {}  # events inside their quiet interval
        self._fields: dict[str, dict[str, Any]] = {}

    def note(self, event: str, reason: str, **fields: Any) -> None:
        """One occurrence of `event` for `reason` (fields: the latest context, no secrets)."""
        if event in self._counts:
            self._counts[event][reason] += 1
            self._fields[event] = fields
            return
        self._log.warning(event, **fields, **{reason: 1})
        self._counts[event] = Counter()
        self._fields[event] = {}
        asyncio.get_running_loop().call_later(self._interval, self._flush, event)

    def _flush(self, event: str) -> None:
        """End an interval: log what it counted, or end the quiet period when nothing came."""
        counts = self._counts.pop(event, Counter())
        fields = self._fields.pop(event, {})
        if not counts:
            return
        self._log.warning(event, **fields, **counts, interval_s=self._interval)
        self._counts[event] = Counter()
        self._fields[event] = {}
        asyncio.get_running_loop().call_later(self._interval, self._flush, event)

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """An event-loop exception handler: out-of-resource socket errors (asyncio's own
        "socket.accept() out of system resource", repeated on every retry) go through this
        log; anything else to the loop's default handler."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_RESOURCES:
            self.note("http.accept_failed", errno.errorcode.get(exc.errno, str(exc.errno)))
            return
        loop.default_exception_handler(context)
