"""Ship captured IDs to the daemon's ingest endpoint from a background thread.

The app only ever appends to a bounded in-memory queue. The thread sends batches; a 400 that
names bad items drops those alone (each logged once with the daemon's reason) and the rest
are sent again. When the daemon cannot take them (no answer, 5xx, 429, a refused token,
ingest off) the records go to the spool file and the thread waits, doubling from
`backoff_first` up to `backoff_cap` seconds with jitter, before it sends the spool again,
oldest first, in this process or the next.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import random
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx

from retention.capture import target
from retention.capture.answers import Verdict, backoff, judge, retry_after
from retention.capture.spool import MAX_BYTES, Spool
from retention.core.quoting import quote
from retention.redaction import register_secret

log = logging.getLogger("retention.capture")
BATCH = 500
LINGER_S = 0.05
QUEUE_MAX = 100_000  # records in memory while the thread is busy; past it they are dropped
IDLE_CHECK_S = 30.0  # how often an idle shipper looks for records another process spooled
TIMEOUT_S = 5.0  # each step of a request; and the whole of its answer's body
MAX_ANSWER = 1024 * 1024  # bytes of an answer read (the daemon's 400 for 500 items: ~200 KB)
CLOSE_TIMEOUT_S = 1.0  # per request while the process exits


def _read_answer(answer: httpx.Response, deadline: float) -> bytes | None:
    """The daemon's answer body, or None when it is longer than MAX_ANSWER bytes or still
    arriving at `deadline` (a server sending gigabytes, or a byte a second, holds neither the
    app's memory nor this thread); the status and headers stand either way."""
    body = bytearray()
    for chunk in answer.iter_raw():
        body += chunk
        if len(body) > MAX_ANSWER or time.monotonic() > deadline:
            return None
    return bytes(body)


def default_spool() -> Path:
    """`$XDG_STATE_HOME/retention/capture-spool.jsonl` (or ~/.local/state/...)."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "retention" / "capture-spool.jsonl"


class Shipper:
    """One background sender per (ingest URL, spool file)."""

    def __init__(
        self,
        ingest_url: str,
        token: str,
        spool: Path,
        *,
        spool_max_bytes: int = MAX_BYTES,
        backoff_first: float = 1.0,
        backoff_cap: float = 60.0,
        verify: Any = True,
    ) -> None:
        self.url = target.ingest_url(ingest_url) + "/v1/records"
        register_secret(target.token(token))  # the daemon's reasons are logged, never it
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",  # read as sent, never inflated here
        }
        self.spool = Spool(spool, spool_max_bytes)
        self.first, self.cap = backoff_first, backoff_cap
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_MAX)
        self.counts = {"sent": 0, "dropped_bad": 0, "dropped_queue_full": 0}
        self._verify = verify
        self._failures = 0
        self._next_try = 0.0  # time.monotonic() before which nothing is sent
        self._spool_retry = 0.0  # time.monotonic() before which a spool that failed waits
        self._trouble: str | None = None  # the trouble last warned about
        self._rand = random.Random()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention-capture", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def put(self, record: dict[str, Any]) -> None:
        """Queue one record; never blocks, never raises."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            if not self.counts["dropped_queue_full"]:
                log.warning(
                    "retention capture: %d IDs wait in memory; new ones are dropped", QUEUE_MAX
                )
            self.counts["dropped_queue_full"] += 1

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (or spool it) before the process exits."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # when full, the thread is busy and sees the flag
            self.queue.put_nowait(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        """Send batches as they come and the spool when it is time; never dies."""
        with httpx.Client(timeout=TIMEOUT_S, trust_env=False, verify=self._verify) as http:
            stop = False
            while not stop:
                try:
                    stop = self._step(http)
                except Exception:
                    log.warning("retention capture: the shipper failed", exc_info=True)
                    self._failed("the shipper failed", 0.0)

    def _step(self, http: httpx.Client) -> bool:
        """One turn: take a batch, send what is due or spool it; True once closing is done."""
        batch, stop = self._next_batch(self._wait())
        if stop:
            self._final(http, batch)
            return True
        if time.monotonic() < self._next_try:  # backing off: the batch waits on disk
            if batch:
                self.spool.append(batch)
            return False
        spool_due = time.monotonic() >= self._spool_retry
        if spool_due and not self.spool.drain(lambda records: self._deliver(http, records)):
            if time.monotonic() < self._next_try:  # the daemon failed: the batch waits on disk
                if batch:
                    self.spool.append(batch)
                return False
            # the file failed (the spool warned why): look at it again later; the app's IDs
            # still go to the daemon meanwhile
            self._spool_retry = time.monotonic() + IDLE_CHECK_S
        if batch:
            left = self._deliver(http, batch)
            if left:
                self.spool.append(left)
        return False

    def _wait(self) -> float:
        """How long to wait for the app's next record before looking at the spool."""
        pause = self._next_try - time.monotonic()
        if pause > 0:
            return pause
        spool_due = self.spool.size() and time.monotonic() >= self._spool_retry
        return 0.0 if spool_due else IDLE_CHECK_S

    def _next_batch(self, wait: float) -> tuple[list[dict[str, Any]], bool]:
        """Up to BATCH records, after waiting at most `wait` seconds for the first."""
        try:
            first = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
        except queue.Empty:
            return [], self._stopping.is_set()
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
        return batch, self._stopping.is_set() and self.queue.empty()

    def _final(self, http: httpx.Client, batch: list[dict[str, Any]]) -> None:
        """At exit: one quick try unless backing off; what is not taken is spooled."""
        left = batch
        if batch and time.monotonic() >= self._next_try:
            left = self._deliver(http, batch, CLOSE_TIMEOUT_S)
        if left:
            self.spool.append(left)

    def _deliver(
        self, http: httpx.Client, batch: list[dict[str, Any]], timeout: float = TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Send `batch`, dropping only what the daemon names as bad (a 400 naming none, or a
        413, halves the batch until it does); returns what is left to send later."""
        parts = deque([batch])
        while parts:
            part = parts.popleft()
            verdict, wait = self._post(http, part, timeout)
            if verdict.kind == "sent":
                self.counts["sent"] += len(part)
            elif verdict.kind == "drop":
                for index, reason in sorted(verdict.bad.items()):
                    self._drop(part[index], reason)
                rest = [r for i, r in enumerate(part) if i not in verdict.bad]
                if rest:
                    parts.appendleft(rest)
            elif verdict.kind == "split" and len(part) == 1:
                self._drop(part[0], "refused by the daemon, naming no item")
            elif verdict.kind == "split":
                parts.extendleft([part[len(part) // 2 :], part[: len(part) // 2]])
            else:
                self._failed(verdict.reason, wait)
                return part + [record for rest in parts for record in rest]
        self._succeeded()
        return []

    def _post(
        self, http: httpx.Client, part: list[dict[str, Any]], timeout: float
    ) -> tuple[Verdict, float]:
        """POST one batch; the verdict on the answer and its Retry-After (seconds)."""
        body = json.dumps({"records": part}).encode()  # \u escapes: any str can be sent
        try:
            with http.stream(
                "POST", self.url, content=body, headers=self.headers, timeout=timeout
            ) as answer:
                text = _read_answer(answer, time.monotonic() + timeout)
        except httpx.HTTPError as exc:
            log.debug("retention capture: %s", type(exc).__name__)
            return Verdict("retry", reason=f"cannot reach the daemon at {self.url}"), 0.0
        try:
            payload = json.loads(text) if text is not None else None
        except (ValueError, RecursionError):
            payload = None
        wait = retry_after(answer.headers.get("retry-after"), self.cap)
        return judge(answer.status_code, payload, len(part)), wait

    def _drop(self, record: dict[str, Any], reason: str) -> None:
        """Give up on one record the daemon will never take, saying why (once: it is gone)."""
        self.counts["dropped_bad"] += 1
        log.warning(
            "retention capture: the daemon refused record %s (%s); it is dropped",
            quote(record.get("id") if isinstance(record, dict) else record),
            reason,
        )

    def _failed(self, trouble: str, at_least: float) -> None:
        """Wait before the next try: doubling, capped, jittered (longer if the daemon asked)."""
        self._failures += 1
        pause = max(backoff(self._failures, self.first, self.cap, self._rand), at_least)
        self._next_try = time.monotonic() + pause
        if trouble != self._trouble:  # one warning per trouble, not one per try
            self._trouble = trouble
            log.warning(
                "retention capture: %s; IDs wait in %s and are sent again (every %gs at most)",
                trouble,
                self.spool.path,
                self.cap,
            )

    def _succeeded(self) -> None:
        """The daemon takes records again."""
        if self._trouble is not None:
            log.info("retention capture: the daemon takes IDs again")
        self._failures, self._next_try, self._trouble = 0, 0.0, None
