"""A repeated fault is sent once an interval with a count, not once per occurrence: the first
at once, the rest counted, a quiet interval ending the throttle, closing sending the count."""

from __future__ import annotations

import threading
import time
from typing import Any

from retention.core.vocabulary import Notice
from retention.notify.throttle import NoticeThrottle
from tests.notify_receivers import wait_for

INTERVAL = 0.3
FULL = {"path": "/var/lib/retention/audit.jsonl", "error": "No space left on device"}


class Sent:
    """What the throttle let through, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, name: Notice, fields: dict[str, Any]) -> None:
        """Keep one."""
        with self.lock:
            self.items.append((str(name), fields))

    def repeated(self) -> list[int | None]:
        """Each one's `repeated` (None: sent as it happened)."""
        with self.lock:
            return [fields.get("repeated") for _, fields in self.items]


def test_a_flood_is_one_notice_then_a_count_per_interval() -> None:
    """A hundred failures at once: the first is sent, the other 99 come as one count at the
    end of the interval; after a quiet interval the next is sent at once again."""
    sent = Sent()
    throttle = NoticeThrottle(sent, INTERVAL)
    for n in range(100):
        throttle.note(Notice.AUDIT_FILE_WRITE_FAILED, {**FULL, "n": n})
    assert sent.repeated() == [None]
    assert wait_for(lambda: len(sent.items) == 2, 2)
    name, summary = sent.items[1]
    assert name == "audit.file_write_failed" and summary["n"] == 99  # the latest one's fields
    assert (summary["repeated"], summary["interval_s"]) == (99, INTERVAL)
    time.sleep(INTERVAL * 2)  # an interval with none: the quiet ends
    throttle.note(Notice.AUDIT_FILE_WRITE_FAILED, FULL)
    assert sent.repeated() == [None, 99, None]
    throttle.close()


def test_different_faults_are_throttled_apart_and_close_sends_the_counts() -> None:
    """Another error, path or name is another fault, sent at once; closing sends what each
    counted and stops the timers (nothing arrives after)."""
    sent = Sent()
    throttle = NoticeThrottle(sent, 60)
    for _ in range(3):
        throttle.note(Notice.AUDIT_FILE_WRITE_FAILED, FULL)
        throttle.note(Notice.AUDIT_FILE_WRITE_FAILED, {**FULL, "error": "Read-only file system"})
        throttle.note(Notice.AUDIT_FILE_WRITE_FAILED, {**FULL, "path": "/elsewhere"})
        throttle.note(Notice.SWEEP_CRASHED, {"error": "boom"})
    assert sent.repeated() == [None] * 4
    throttle.close()
    assert sent.repeated() == [None] * 4 + [2] * 4
    throttle.note(Notice.SWEEP_CRASHED, {"error": "boom"})  # closed: passed straight on
    assert len(sent.items) == 9
