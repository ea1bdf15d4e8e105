"""A token bucket that holds a provider to `rate_limit_per_s`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` acquisitions a second on average, bursts up to `burst`."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        """Add the tokens earned since the last look."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for one token; False when `stop` is set first (no token is taken)."""
        async with self._lock:
            self._refill()
            while self._tokens < 1:
                if await _stopped(stop, (1 - self._tokens) / self.rate):
                    return False
                self._refill()
            self._tokens -= 1
            return True


class Unlimited:
    """No ceiling."""

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Return at once."""
        return True


async def _stopped(stop: asyncio.Event | None, seconds: float) -> bool:
    """Sleep `seconds`, waking early when `stop` is set; whether it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
