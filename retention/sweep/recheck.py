"""The last look before a DELETE: is this record still ours, pending, unheld and due?

Workers ask just before sending; the questions of many workers are answered by one query, so
the check costs one round trip per batch, not per request. The answer uses the ledger's row as
it is now and the policies in force now, so a hold or a longer TTL that arrived while the
request waited for its turn is honoured. A record it refuses because a hold placed in the
ledger covers it though it is pending (one that escaped its hold) is held there and then, with
its `response.held`: refused once, not claimed again at every sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from retention.core.plan import decide
from retention.core.policies import PolicySet
from retention.core.records import ClaimedRecord
from retention.core.vocabulary import Basis, State
from retention.errors import LedgerError
from retention.ledger import holds, queries
from retention.ledger.ledger import Ledger
from retention.logs import get_logger
from retention.services.holds import hold_escaped

BATCH = 500
log = get_logger("retention.sweep")


class Recheck:
    """Batches `may_send` questions into one query each."""

    def __init__(
        self,
        ledger: Ledger,
        owner: str,
        policies: Callable[[], PolicySet],
        clock: Callable[[], datetime],
    ) -> None:
        self.ledger, self.owner, self.policies, self.clock = ledger, owner, policies, clock
        self._waiting: dict[int, list[asyncio.Future[bool]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def may_send(self, record: ClaimedRecord) -> bool:
        """Whether the DELETE of this claimed record may be sent now: unheld and due under the
        policies in force (its facts never change; an erasure makes it due at the request),
        and still pending, unheld, ours and past its deadline in the ledger (what may change
        while it waited)."""
        decision = decide(record.facts(), self.policies())
        held = decision.hold is not None  # a hold wins, an erasure's too
        due = record.deadline_basis == Basis.ERASURE or decision.is_due(self.clock())
        if not held and not due:
            return False  # an erasure is due at its request, whatever the policies say
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(record.id, []).append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._answer())
        # a claimed record a hold covers escaped it: asked all the same, so the ledger holds it
        return await future and not held

    async def _answer(self) -> None:
        """Answer everyone waiting, a batch at a time."""
        await asyncio.sleep(0)  # let the other workers of this tick ask too
        while self._waiting:
            ids = list(self._waiting)[:BATCH]
            batch = {i: self._waiting.pop(i) for i in ids}
            try:
                allowed = await asyncio.to_thread(self._check, ids)
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        future.set_exception(exc)
                continue
            for record_id, futures in batch.items():
                for future in futures:
                    future.set_result(record_id in allowed)

    def _check(self, ids: list[int]) -> set[int]:
        """The IDs among `ids` that are ours, pending, unheld and past their deadline now, and
        that no hold placed in the ledger covers (one this sweep's policies may not know yet,
        and that a record recorded meanwhile by a process that did not know it either escaped)."""
        now, r = self.clock(), queries.R
        with self.ledger.read() as conn:
            rows = conn.execute(
                select(r.id, r.state, r.hold, r.lease_owner, r.deadline).where(r.id.in_(ids))
            ).all()
            covered = holds.covered_ids(conn, holds.active_holds(conn), ids)
        ours = [
            row
            for row in rows
            if row.state == State.PENDING and row.hold is None and row.lease_owner == self.owner
        ]
        escaped = [row.id for row in ours if row.id in covered]
        if escaped:
            self._hold(escaped)
        return {row.id for row in ours if row.deadline <= now and row.id not in covered}

    def _hold(self, record_ids: list[int]) -> None:
        """Hold records that escaped a placed hold; a failure is logged (they are refused all
        the same, and asked about again at the next sweep)."""
        try:
            hold_escaped(self.ledger, record_ids)
        except LedgerError as exc:
            log.warning(
                "sweep.escaped_hold_not_written", records=len(record_ids), error=exc.message
            )
