"""Group commit: requests that arrive during a commit share the next one, each answered alone."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy.exc import IntegrityError

from retention.daemon.group_commit import GroupCommit
from retention.errors import InputError, LedgerError


class Store:
    """A commit function over a set, slow enough for requests to pile up behind a commit."""

    def __init__(self, delay: float = 0.02) -> None:
        self.ids: set[str] = set()
        self.groups: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def commit(self, batches: list[list[str]]) -> list[int]:
        """All batches or none (one transaction); each one's count of new IDs."""
        with self.lock:
            threading.Event().wait(self.delay)
            if any("bad" in batch for batch in batches):
                raise InputError("a bad item")
            results, staged = [], set(self.ids)
            for batch in batches:
                fresh = set(batch) - staged
                staged |= fresh
                results.append(len(fresh))
            self.ids = staged
            self.groups.append(len(batches))
            return results


async def _post(group: GroupCommit[str, int], items: list[str]) -> int:
    """Queue one request and wait for its answer."""
    return await (await group.enqueue(items))


def test_concurrent_requests_share_commits_and_count_alone() -> None:
    """64 requests at once commit in a few groups; each is told what was new for it."""
    store = Store()
    group: GroupCommit[str, int] = GroupCommit(store.commit)

    async def main() -> list[int]:
        return await asyncio.gather(*(_post(group, [f"r{i}", "shared"]) for i in range(64)))

    answers = asyncio.run(main())
    assert len(store.ids) == 65
    assert sum(answers) == 65  # "shared" is new for exactly one request
    assert len(store.groups) < 10 and sum(store.groups) == 64


def test_a_failing_request_fails_alone() -> None:
    """A group holding a request the store refuses is committed again one by one: the bad
    request gets its error, every other one lands."""
    store = Store()
    group: GroupCommit[str, int] = GroupCommit(store.commit)

    async def main() -> list[int | BaseException]:
        first = asyncio.ensure_future(_post(group, ["first"]))  # busy: the rest pile up
        await asyncio.sleep(0.005)
        rest = [_post(group, ["bad"] if i == 3 else [f"r{i}"]) for i in range(8)]
        return [await first, *await asyncio.gather(*rest, return_exceptions=True)]

    answers = asyncio.run(main())
    assert isinstance(answers[4], InputError)
    assert [a for i, a in enumerate(answers) if i != 4] == [1] * 8
    assert store.ids == {"first"} | {f"r{i}" for i in range(8) if i != 3}


def test_a_ledger_away_fails_the_group_without_retrying_each() -> None:
    """When the ledger itself fails, every request of the group gets the error at once."""
    calls = []

    def away(batches: list[list[str]]) -> list[int]:
        calls.append(len(batches))
        threading.Event().wait(0.02)
        raise LedgerError("database is locked")

    group: GroupCommit[str, int] = GroupCommit(away)

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(
            *(_post(group, [f"r{i}"]) for i in range(10)), return_exceptions=True
        )

    answers = asyncio.run(main())
    assert all(isinstance(a, LedgerError) for a in answers)
    assert sum(calls) == 10  # each request tried once, in whatever groups formed


def test_queue_is_bounded() -> None:
    """A request waits for room once `max_queued` records wait: the queue never holds more."""
    store = Store(delay=0.01)
    group: GroupCommit[str, int] = GroupCommit(store.commit, max_group=50, max_queued=100)
    seen: list[int] = []

    async def main() -> None:
        async def post(i: int) -> None:
            answer = await group.enqueue([f"r{i}-{j}" for j in range(10)])
            seen.append(group._queued)
            await answer

        await asyncio.gather(*(post(i) for i in range(60)))

    asyncio.run(main())
    assert len(store.ids) == 600 and max(seen) <= 100


@pytest.mark.parametrize("size", [1, 3])
def test_drained_waits_for_what_was_queued(size: int) -> None:
    """`drained()` returns once every queued request is committed."""
    store = Store()
    group: GroupCommit[str, int] = GroupCommit(store.commit)

    async def main() -> None:
        answers = [await group.enqueue([f"r{i}"]) for i in range(size)]
        await group.drained()
        assert all(a.done() for a in answers)

    asyncio.run(main())
    assert len(store.ids) == size


def test_a_constraint_refused_in_a_group_is_one_requests_fault() -> None:
    """A ledger error caused by a refused constraint (another replica recorded the same new ID
    at that moment) is retried a request at a time: the others of the group land."""
    store = Store()

    def commit(batches: list[list[str]]) -> list[int]:
        if len(batches) > 1 and any("clash" in batch for batch in batches):
            try:
                raise IntegrityError("INSERT", {}, Exception("duplicate key"))
            except IntegrityError as exc:
                raise LedgerError("write failed: duplicate key") from exc
        return store.commit([b for b in batches if "clash" not in b]) + (
            [0] if any("clash" in b for b in batches) else []
        )

    group: GroupCommit[str, int] = GroupCommit(commit)

    async def main() -> list[int | BaseException]:
        first = asyncio.ensure_future(_post(group, ["first"]))
        await asyncio.sleep(0.005)
        rest = [_post(group, ["clash"] if i == 2 else [f"r{i}"]) for i in range(5)]
        return [await first, *await asyncio.gather(*rest, return_exceptions=True)]

    answers = asyncio.run(main())
    assert answers == [1, 1, 1, 0, 1, 1]
    assert store.ids == {"first", "r0", "r1", "r3", "r4"}
