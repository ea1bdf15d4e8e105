"""The bookkeeping of requests in flight: the sweep's DELETE budget and a provider's tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Budget:
    """The DELETE requests one sweep may still send (--limit, max_deletes_per_sweep)."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, n: int = 1) -> int:
        """Take up to `n`; returns how many were granted."""
        granted = max(0, min(n, self.left))
        self.left -= granted
        return granted


class Flight:
    """The delete tasks of one provider; waiting for "one done" costs O(1), not O(tasks)
    as `asyncio.wait` over a large set does."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()

    def __len__(self) -> int:
        return len(self.tasks)

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a tracked task."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._done.set()

    async def one_done(self) -> None:
        """Return once at least one task finished since the last call."""
        await self._done.wait()
        self._done.clear()

    def cancel(self) -> None:
        """Cancel every task."""
        for task in self.tasks:
            task.cancel()

    async def drain(self) -> None:
        """Wait for every task to end."""
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
