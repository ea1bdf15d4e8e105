"""Write sweep outcomes in batched commits: each outcome and its event in the same one.

Writes run in a worker thread so the event loop keeps sending. A failed write (the database
away for a moment) keeps its batch and is tried again; an outcome is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from retention.core.vocabulary import FINAL, Event
from retention.errors import LedgerError
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import off_loop
from retention.logs import get_logger
from retention.provider.client import Answer
from retention.sweep.hooks import Hooks
from retention.sweep.results import Result, apply_all, cannot_delete_key, first_time
from retention.sweep.summary import SweepSummary

MAX_BATCH = 256
MAX_WAIT_S = 0.05
CLOSE_ATTEMPTS = 30  # at close, keep trying this many times (about a minute) before giving up
log = get_logger("retention.sweep")


class Flusher:
    """Collects Results and commits them at most every 50 ms or 256 outcomes."""

    def __init__(self, ledger: Ledger, report: SweepSummary, hooks: Hooks, owner: str) -> None:
        self.ledger, self.report, self.hooks, self.owner = ledger, report, hooks, owner
        self._pending: list[Result] = []
        self._faults: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin flushing in the background."""
        self._task = asyncio.create_task(self._loop())

    def put(self, result: Result) -> None:
        """Queue one outcome."""
        self._pending.append(result)
        self.report.add(result.record.provider, result.kind)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def auth_failed(self, provider: str, answer: Answer) -> None:
        """Queue the alert that a provider refused our credentials."""
        log.error(Event.PROVIDER_AUTH_FAILED, provider=provider, http_status=answer.status)
        self.fault(
            Event.PROVIDER_AUTH_FAILED, provider, http_status=answer.status, error=answer.error
        )

    def cannot_delete(self, provider: str, kind: str, reason: str, status: int | None) -> None:
        """Queue `provider.cannot_delete` for `kind`: written only if the ledger does not
        already say so (one event for a provider and kind until one of them is deleted)."""
        self.fault(
            Event.PROVIDER_CANNOT_DELETE,
            provider,
            http_status=status,
            error=reason,
            details={"object": kind},
            once=cannot_delete_key(provider, kind),
        )

    def fault(
        self,
        event: Event,
        provider: str,
        *,
        http_status: int | None = None,
        error: str | None = None,
        details: dict[str, Any] | None = None,
        once: str | None = None,
    ) -> None:
        """Queue a `provider.*` event (written in the next batch, before its outcomes); with
        `once`, a meta key, only if the ledger does not say so already (results.first_time)."""
        fields: dict[str, Any] = {"provider": provider, "http_status": http_status, "error": error}
        if details:
            fields["details"] = details
        self._faults.append({"event": event, "once": once, **fields})
        self._wake.set()

    async def close(self) -> None:
        """Flush what is left and stop."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

    async def _loop(self) -> None:
        """Flush on a timer or when a batch fills, until closed and empty."""
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MAX_WAIT_S)
            self._wake.clear()
            batch, faults = self._pending, self._faults
            self._pending, self._faults = [], []
            if batch or faults:
                try:
                    now = await off_loop(self._write, batch, faults)
                except LedgerError as exc:
                    self._pending[:0], self._faults[:0] = batch, faults  # keep them, in order
                    failures += 1
                    log.error(
                        "sweep.flush_failed",
                        error=exc.message,
                        attempt=failures,
                        waiting=len(self._pending),
                    )
                    if self._closing and failures >= CLOSE_ATTEMPTS:
                        raise
                    await asyncio.sleep(min(2.0, 0.1 * 2**failures))
                    continue
                failures = 0
                self._observe(batch, now)
            if self._closing and not self._pending and not self._faults:
                return

    def _write(self, batch: list[Result], faults: list[dict[str, Any]]) -> datetime:
        """Commit one batch in one transaction; returns its time."""
        with self.ledger.write() as tx:
            for fault in faults:
                if fault["once"] and not first_time(tx, fault["once"], fault["error"]):
                    continue
                fields = {k: v for k, v in fault.items() if k not in ("event", "once")}
                tx.event(fault["event"], **fields)
            apply_all(tx, batch, owner=self.owner)
        return tx.now

    def _observe(self, batch: list[Result], now: datetime) -> None:
        """Tell the hooks what was committed."""
        for result in batch:
            lag = (now - result.record.deadline).total_seconds() if result.kind in FINAL else None
            self.hooks.on_outcome(result.record.provider, result.kind, lag)
        self.hooks.on_progress(sum(1 for r in batch if r.kind in FINAL))
