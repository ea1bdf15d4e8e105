"""The daemon's sweep on demand (an erasure): at once when idle, once more after a running one,
never two at a time."""

from __future__ import annotations

import asyncio

from retention.core.times import utcnow
from retention.daemon.service import Daemon

SLOW = "sweep:\n  interval: 60s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n"


class Sweeps:
    """A stand-in for one sweep: counts them, and how many ran at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.started, self.running, self.most = seconds, 0, 0, 0

    async def __call__(self) -> None:
        """One sweep that takes `seconds`."""
        self.started += 1
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(self.seconds)
        self.running -= 1


def test_asked_while_one_runs_runs_once_more_after_it(make_env) -> None:  # type: ignore[no-untyped-def]
    """Three asks during a sweep: one more sweep right after it, never two at once."""
    env = make_env(extra=SLOW)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
    sweeps = Sweeps(0.2)
    daemon._one_sweep = sweeps  # type: ignore[method-assign]

    async def scenario() -> None:
        job = asyncio.create_task(daemon._sweep_job())
        await asyncio.sleep(0.05)
        for _ in range(3):
            daemon.sweep_now()
        await job

    asyncio.run(scenario())
    assert (sweeps.started, sweeps.most) == (2, 1)


def test_asked_when_idle_sweeps_at_once(make_env) -> None:  # type: ignore[no-untyped-def]
    """With a 60 s interval, a sweep asked for after the first one starts within a second."""
    env = make_env(extra=SLOW)
    daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
    sweeps = Sweeps(0.01)
    daemon._one_sweep = sweeps  # type: ignore[method-assign]

    async def scenario() -> tuple[int, int]:
        running = asyncio.create_task(daemon.run())
        while sweeps.started < 1 or daemon._sweeping:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        before = sweeps.started
        daemon.sweep_now()
        for _ in range(100):
            if sweeps.started > before:
                break
            await asyncio.sleep(0.01)
        after = sweeps.started
        daemon.stop()
        assert await running == 0
        return before, after

    before, after = asyncio.run(scenario())
    assert (before, after) == (1, 2)
