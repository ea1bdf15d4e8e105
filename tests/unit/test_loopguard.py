"""Ledger calls stay off the event loop: one made on it is reported, and raises in debug mode."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from retention.ledger.audit_file import AuditSink
from retention.ledger.db import open_engine
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import BlockingCallError, off_loop


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A ledger on a fresh SQLite file, with no audit file."""
    return Ledger(open_engine(f"sqlite:///{tmp_path}/l.db"), AuditSink(None), chain="main")


def read(ledger: Ledger) -> None:
    """One read, from wherever it is called."""
    with ledger.read():
        pass


def test_a_call_on_the_loop_is_logged_once_per_site(ledger: Ledger) -> None:
    """A read on the loop's thread is logged with its call site, once however often it runs;
    the same read in a worker thread is not."""

    async def scenario() -> None:
        for _ in range(3):
            with ledger.read():
                pass
        await asyncio.to_thread(read, ledger)

    with capture_logs() as logs:
        asyncio.run(scenario())
    found = [entry for entry in logs if entry["event"] == "ledger.blocking_call_on_loop"]
    assert len(found) == 1 and found[0]["call"] == "read"
    assert found[0]["site"].startswith(f"{__name__}:scenario:")


def test_a_call_on_the_loop_raises_in_debug_mode(ledger: Ledger) -> None:
    """In asyncio debug mode a write on the loop's thread raises before it begins."""

    async def scenario() -> None:
        with ledger.write() as tx:
            tx.event("never.written")

    with pytest.raises(BlockingCallError, match="ledger write on the event loop"):
        asyncio.run(scenario(), debug=True)
    with ledger.read() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM audit_events").scalar() == 0


@pytest.mark.parametrize("cancels", [1, 2])
def test_a_cancelled_call_ends_before_the_cancel_propagates(cancels: int) -> None:
    """Cancelling a call made through `off_loop` (once, or twice while its thread runs) waits
    for its thread: whatever the canceller does next comes after it."""
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.3)
        done.set()

    async def scenario() -> bool:
        task = asyncio.create_task(off_loop(slow))
        for _ in range(cancels):
            await asyncio.sleep(0.05)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return done.is_set()

    assert asyncio.run(scenario())
