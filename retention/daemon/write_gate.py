"""The gate HTTP writes (ingest, receipts) pass: a few at a time, none once the daemon stops.

Each request reads its body, then waits for a slot to parse it (a slow upload holds none), so
however many clients post at once, only `slots` bodies are parsed and only `slots` worker
threads wait on the ledger (the sweep's ledger calls keep theirs). At shutdown the gate
closes: new writes are refused (503, the client sends again later) and the stop waits for
those in flight, so none lands after `daemon.stopped` and the last signed checkpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

SLOTS = 4


class GateClosedError(Exception):
    """The daemon is stopping: no new write is let in."""


class WriteGate:
    """At most `slots` writes at once; `close()` refuses new ones and waits for the rest."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._closed = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for one write; GateClosedError when the gate is (or becomes) closed."""
        if self._closed:
            raise GateClosedError
        async with self._slots:
            if self._closed:
                raise GateClosedError
            self._in_flight += 1
            self._idle.clear()
            try:
                yield
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()

    async def close(self) -> None:
        """Refuse new writes and wait for those in flight."""
        self._closed = True
        await self._idle.wait()
