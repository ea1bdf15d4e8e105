"""The daemon's loop in-process: it survives failing sweeps, and a cut sweep loses nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from retention.config.settings import split_listen
from retention.core.times import utcnow
from retention.daemon.service import Daemon
from retention.sweep.runner import sweep_once
from tests.integration.conftest import Env

EXTRA = "sweep:\n  interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"


def test_daemon_survives_sweeps_that_raise(make_env, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A sweep that raises is counted and logged; the schedule carries on and stays live."""
    env = make_env(extra=EXTRA)

    async def scenario() -> tuple[bool, float]:
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        running = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.3)
        monkeypatch.delenv("FW_TEST_KEY")  # every sweep from now on fails to read its key
        await asyncio.sleep(2.5)
        alive = daemon.alive()
        errors = daemon.metrics.sweep_errors._value.get()
        daemon.stop()
        assert await running == 0
        return alive, errors

    alive, errors = asyncio.run(scenario())
    assert alive and errors >= 2


def test_cancelled_sweep_gives_leases_back_and_marks_nothing(env: Env) -> None:
    """A sweep cut mid-flight (grace period over) leaves unanswered IDs pending, unleased."""
    env.standin.knobs.update({"latency_ms": 2000})
    env.record(*(f"c{i}" for i in range(10)))

    async def scenario() -> None:
        task = asyncio.create_task(
            sweep_once(env.ledger, env.settings, env.policies, clock=lambda: datetime.now(UTC))
        )
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    with env.ledger.read() as conn:
        rows = conn.execute(text("SELECT state, lease_owner FROM records")).all()
    assert {r[0] for r in rows} == {"pending"} and {r[1] for r in rows} == {None}


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("[::1]:9", ("::1", 9)),
        (":80", ("127.0.0.1", 80)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    """`server.listen` forms."""
    assert split_listen(listen) == expected


def test_parse_listen_refuses_nonsense() -> None:
    """A listen address without a port is refused, saying what is expected."""
    with pytest.raises(ValueError, match="expected host:port"):
        split_listen("localhost")
