"""Concurrency that backs off when the provider says 429 (AIMD, like TCP's congestion window).

At most `maximum` requests in flight; a 429 halves the allowance (at most once a second, so
one burst of 429s counts once); each run of successes as long as the allowance adds one back.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType


class AdaptiveLimit:
    """An async context manager admitting up to `limit` holders; `limit` adapts."""

    def __init__(self, maximum: int, *, cooldown_s: float = 1.0) -> None:
        self.maximum = self.limit = maximum
        self.cooldown_s = cooldown_s
        self.in_use = 0
        self._successes = 0
        self._last_cut = 0.0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> AdaptiveLimit:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        async with self._changed:
            self.in_use -= 1
            self._changed.notify()

    def feedback(self, status: int | None) -> None:
        """Adjust to one answer: halve on 429, grow slowly on success."""
        if status == 429:
            now = time.monotonic()
            if now - self._last_cut >= self.cooldown_s:
                self.limit, self._last_cut, self._successes = max(1, self.limit // 2), now, 0
            return
        if status is not None and status < 500:
            self._successes += 1
            if self._successes >= self.limit and self.limit < self.maximum:
                self.limit, self._successes = self.limit + 1, 0
                asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        """Let a waiter in after the allowance grew."""
        async with self._changed:
            self._changed.notify()
