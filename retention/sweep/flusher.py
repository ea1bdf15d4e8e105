"""Write sweep outcomes in batched commits: each outcome and its event in the same one."""

from __future__ import annotations

import asyncio
import contextlib

from retention.ledger.ledger import Ledger
from retention.logs import get_logger
from retention.provider.client import Answer
from retention.sweep.hooks import Hooks
from retention.sweep.report import SweepReport
from retention.sweep.results import TERMINAL, Result, apply

MAX_BATCH = 256
MAX_WAIT_S = 0.05
log = get_logger("retention.sweep")


class Flusher:
    """Collects Results and commits them at most every 50 ms or 256 outcomes."""

    def __init__(self, ledger: Ledger, report: SweepReport, hooks: Hooks) -> None:
        self.ledger, self.report, self.hooks = ledger, report, hooks
        self._pending: list[Result] = []
        self._auth: list[tuple[str, Answer]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin flushing in the background."""
        self._task = asyncio.create_task(self._loop())

    def put(self, result: Result) -> None:
        """Queue one outcome."""
        self._pending.append(result)
        self.report.add(result.row.provider, result.kind)
        if len(self._pending) >= MAX_BATCH:
            self._wake.set()

    def auth_failed(self, provider: str, answer: Answer) -> None:
        """Queue the alert that a provider refused our credentials."""
        self._auth.append((provider, answer))
        log.error("provider.auth_failed", provider=provider, http_status=answer.status)
        self._wake.set()

    async def close(self) -> None:
        """Flush what is left and stop."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

    async def _loop(self) -> None:
        """Flush on a timer or when a batch fills, until closed and empty."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MAX_WAIT_S)
            self._wake.clear()
            self.flush()
            if self._closing and not self._pending:
                return

    def flush(self) -> None:
        """Commit everything queued, in one transaction."""
        if not self._pending and not self._auth:
            return
        batch, self._pending = self._pending, []
        auth, self._auth = self._auth, []
        with self.ledger.write() as tx:
            for provider, answer in auth:
                tx.event(
                    "provider.auth_failed",
                    provider=provider,
                    http_status=answer.status,
                    error=answer.error,
                )
            for result in batch:
                apply(tx, result)
        for result in batch:
            lag = (
                (tx.now - result.row.deadline).total_seconds() if result.kind in TERMINAL else None
            )
            self.hooks.on_outcome(result.row.provider, result.kind, lag)
        self.hooks.on_progress(sum(1 for r in batch if r.kind in TERMINAL))
