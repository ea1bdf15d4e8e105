"""What every sink shares: its event globs, a bounded queue the committing threads put into
without waiting, and one background thread that empties it."""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import deque
from typing import Any

from retention.config.notify_settings import NotifySettings
from retention.logs import get_logger
from retention.redaction import redact

log = get_logger("retention.notify")
CAPACITY = 10_000  # notifications queued in memory per sink; past it, the spool or a drop


class Sink:
    """One destination. Subclasses say what a full queue means (`_overflow`), how a batch is
    taken under the queue's lock (`_take`) and delivered outside it (`_work`)."""

    kind = "sink"

    def __init__(self, settings: NotifySettings, *, capacity: int = CAPACITY) -> None:
        self.settings, self.name, self.capacity = settings, settings.name, capacity
        self._wanted: dict[str, bool] = {}
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False  # a batch is in the worker's hands
        self._thread: threading.Thread | None = None
        self.sent = 0  # notifications delivered (syslog: handed to the socket)
        self.failed = 0  # attempts that failed
        self.dropped = 0  # notifications lost: a full spool or queue, or refused by the receiver
        self._problem: str | None = None  # the last failure warned about

    def wants(self, event: str) -> bool:
        """Whether an event of this name is sent here (its `events` globs)."""
        wanted = self._wanted.get(event)
        if wanted is None:
            wanted = any(fnmatch.fnmatchcase(event, glob) for glob in self.settings.events)
            self._wanted[event] = wanted
        return wanted

    def offer(self, message: dict[str, Any]) -> None:
        """Queue one notification; never waits for the network (a full queue goes to the
        spool, or is dropped and counted)."""
        with self._cond:
            if len(self._queue) < self.capacity:
                self._queue.append(message)
                self._cond.notify()
                return
            self._overflow(message)

    @property
    def started(self) -> bool:
        """Whether the worker thread was started."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (started and not stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name=f"notify {self.kind}", daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for what is queued to be handled (sent, or spooled
        while the receiver is away); whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._settled():
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float) -> None:
        """Flush within `timeout` seconds, then stop the worker; whatever is still queued is
        spooled (a webhook) or dropped and counted (syslog)."""
        if self._thread is None:  # never started: nothing queued was ever taken
            self._shut()
            return
        started = time.monotonic()
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(max(0.1, timeout - (time.monotonic() - started)))
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            if left:
                self._abandon(left)
        if not self._thread.is_alive():  # else still in a request: the process's exit ends it
            self._shut()

    def waiting(self) -> int:
        """Notifications not delivered yet, for the metrics."""
        return len(self._queue)

    def _run(self) -> None:
        """The worker: take what is queued, deliver it; never dies of an error."""
        while True:
            with self._cond:
                while not (self._queue or self._stopping or self._due()):
                    self._cond.wait(self._wait_s())
                if self._stopping:
                    self._cond.notify_all()
                    return
                batch = list(self._queue)
                self._queue.clear()
                self._busy = True
                try:
                    batch = self._take(batch)
                except Exception as exc:  # a bug: the batch is lost, the thread goes on
                    self._trouble("notify.internal_error", exc, len(batch))
                    batch = []
            try:
                self._work(batch)
            except Exception as exc:
                self._trouble("notify.internal_error", exc, len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _trouble(self, event: str, exc: BaseException, lost: int) -> None:
        """Log an unexpected failure with its traceback; count what it cost."""
        self.dropped += lost
        log.error(event, sink=self.name, error=redact(f"{type(exc).__name__}: {exc}"), exc_info=exc)

    def _warn_once(self, event: str, error: str, **fields: Any) -> None:
        """One warning per distinct trouble, not one per try."""
        if error != self._problem:
            self._problem = error
            log.warning(event, sink=self.name, error=redact(error), **fields)

    def _settled(self) -> bool:
        """Nothing queued or in hand (a webhook: nor waiting to be sent while it answers)."""
        return not self._queue and not self._busy

    def _due(self) -> bool:
        """Whether the worker has work without new notifications (a spool to retry)."""
        return False

    def _wait_s(self) -> float | None:
        """How long the idle worker sleeps before looking again (None: until woken)."""
        return None

    def _take(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Under the queue's lock: what the worker delivers of the batch just taken."""
        return batch

    def _work(self, batch: list[dict[str, Any]]) -> None:
        """Deliver, outside the queue's lock."""
        raise NotImplementedError

    def _overflow(self, message: dict[str, Any]) -> None:
        """Under the queue's lock: the queue is full."""
        self.dropped += 1
        self._warn_once("notify.queue_full", "the queue is full", capacity=self.capacity)

    def _abandon(self, left: list[dict[str, Any]]) -> None:
        """Under the queue's lock, at close: notifications the worker never took."""
        self.dropped += len(left)

    def _shut(self) -> None:
        """Release sockets and clients."""
