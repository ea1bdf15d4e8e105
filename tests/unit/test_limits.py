"""Concurrency that backs off on 429, and the token bucket."""

from __future__ import annotations

import asyncio
import time

from retention.provider.adaptive import AdaptiveLimit
from retention.provider.ratelimit import TokenBucket


def test_429_halves_the_allowance_once_per_burst() -> None:
    """A burst of 429s halves the allowance once; successes grow it back one by one."""

    async def scenario() -> list[int]:
        limit = AdaptiveLimit(16, cooldown_s=60)
        seen = [limit.limit]
        for _ in range(5):
            limit.feedback(429)
        seen.append(limit.limit)
        for _ in range(8):
            limit.feedback(200)
        seen.append(limit.limit)
        return seen

    assert asyncio.run(scenario()) == [16, 8, 9]


def test_never_more_in_flight_than_allowed() -> None:
    """With the allowance cut to 2, at most 2 holders are inside at once."""

    async def scenario() -> int:
        limit = AdaptiveLimit(8)
        limit.feedback(429)
        limit.feedback(429)
        limit.limit = 2
        peak = 0

        async def hold() -> None:
            nonlocal peak
            async with limit:
                peak = max(peak, limit.in_use)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(hold() for _ in range(20)))
        return peak

    assert asyncio.run(scenario()) == 2


def test_token_bucket_holds_its_rate() -> None:
    """100 acquisitions at 200/s take at least 0.4 s (never faster), and a stop ends the wait."""

    async def scenario() -> tuple[float, bool]:
        bucket = TokenBucket(200)
        started = time.monotonic()
        for _ in range(100):
            await bucket.acquire()
        elapsed = time.monotonic() - started
        stop = asyncio.Event()
        stop.set()
        slow = TokenBucket(0.01, burst=1)
        await slow.acquire()
        return elapsed, await slow.acquire(stop)

    elapsed, granted = asyncio.run(scenario())
    assert 0.4 <= elapsed <= 1.5  # the upper bound only catches a stuck bucket on a busy CI
    assert granted is False
