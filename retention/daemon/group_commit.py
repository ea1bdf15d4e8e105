"""Group commit for ingest: requests that arrive while a commit runs share the next one.

The first request into an idle daemon commits at once, alone. Those that arrive while it
commits wait in a queue, and all of them commit together when it ends: one transaction, one
fsync and one audit-file append for the group, however many clients posted (what PostgreSQL's
commit_delay and InnoDB's binlog group commit do). Each request is answered only once its own
records are durable. When a group fails, its requests are committed again one at a time, so a
request that the ledger refuses fails alone and the others of its group still land.

Memory stays bounded: a request is queued only while the queue holds fewer than
`max_queued` records (it waits for room first, holding its write slot, so parsed bodies
waiting for room are as few as the write gate's slots).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import DataError, IntegrityError

from retention.errors import LedgerError
from retention.ledger.loopguard import off_loop

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_GROUP = 20_000  # records committed in one transaction at most
MAX_QUEUED = 50_000  # records waiting for a commit at most


@dataclass
class _Waiting(Generic[Item, Result]):
    """One request's records, and where its answer goes."""

    items: list[Item]
    answer: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    """Commit what waits, a group at a time, with `commit` (called in a worker thread with
    each request's items, in arrival order; returns one result per request, in that order)."""

    def __init__(
        self,
        commit: Callable[[list[list[Item]]], list[Result]],
        *,
        max_group: int = MAX_GROUP,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._commit = commit
        self._max_group, self._max_queued = max_group, max_queued
        self._queue: deque[_Waiting[Item, Result]] = deque()
        self._queued = 0  # records in the queue
        self._room = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self.groups = 0  # commits made (for tests and metrics)

    async def enqueue(self, items: list[Item]) -> asyncio.Future[Result]:
        """Queue one request's items once there is room; the future gets its result (or the
        error that failed it) once they are committed."""
        if not self._has_room(items):  # else no wait: nothing runs between test and append
            async with self._room:
                await self._room.wait_for(lambda: self._has_room(items))
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(items, answer))
        self._queued += len(items)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return answer

    def _has_room(self, items: list[Item]) -> bool:
        """Whether a request of `items` may be queued now (into an empty queue, always)."""
        return not self._queue or self._queued + len(items) <= self._max_queued

    async def drained(self) -> None:
        """Wait until everything queued so far is committed (or failed)."""
        while self._worker is not None and not self._worker.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._worker)

    async def _run(self) -> None:
        """Commit groups until the queue is empty."""
        while self._queue:
            group = await self._take()
            try:
                results = await off_loop(self._commit, [w.items for w in group])
            except Exception as exc:
                if len(group) > 1 and _one_request_may_be_at_fault(exc):
                    await self._one_at_a_time(group)
                    continue
                for waiting in group:  # the ledger is away: each would wait and fail again
                    _answer(waiting, error=exc)
                continue
            for waiting, result in zip(group, results, strict=True):
                _answer(waiting, result=result)

    async def _take(self) -> list[_Waiting[Item, Result]]:
        """The next group: the oldest requests, up to `max_group` records (at least one)."""
        group = [self._queue.popleft()]
        size = len(group[0].items)
        while self._queue and size + len(self._queue[0].items) <= self._max_group:
            size += len(self._queue[0].items)
            group.append(self._queue.popleft())
        self._queued -= size
        self.groups += 1
        async with self._room:
            self._room.notify_all()
        return group

    async def _one_at_a_time(self, group: list[_Waiting[Item, Result]]) -> None:
        """A failed group again, a request a transaction: each fails or lands on its own."""
        for waiting in group:
            try:
                (result,) = await off_loop(self._commit, [waiting.items])
            except Exception as exc:
                _answer(waiting, error=exc)
            else:
                _answer(waiting, result=result)


def _one_request_may_be_at_fault(exc: Exception) -> bool:
    """Whether a failed group is worth committing again a request at a time: anything but the
    ledger being away (locked past its timeout, unreachable), which would fail each request
    again after the same wait. A constraint the database refused (another replica recorded
    the same new ID at that moment) is one request's: the others land."""
    if not isinstance(exc, LedgerError):
        return True
    return isinstance(exc.__cause__, IntegrityError | DataError)


def _answer(
    waiting: _Waiting[Item, Result], *, result: Result | None = None, error: Exception | None = None
) -> None:
    """Hand a request its outcome, unless it stopped waiting (a client that left: what it
    sent is committed anyway, and sending it again changes nothing)."""
    if waiting.answer.done():
        return
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(result)  # type: ignore[arg-type]
