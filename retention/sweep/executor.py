"""Carry out a sweep: claim due records in batches, DELETE them with bounded concurrency,
retry what may be retried, and write each outcome with its audit event in batched commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from retention.config.settings import Settings
from retention.core.outcomes import backoff, classify
from retention.core.policies import PolicySet
from retention.core.records import ClaimedRecord
from retention.core.vocabulary import Event, ObjectKind, Outcome
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import off_loop
from retention.logs import get_logger
from retention.provider.adaptive import AdaptiveLimit
from retention.provider.client import Answer, ProviderClient
from retention.provider.probe import UNREACHABLE, probe_kind
from retention.provider.ratelimit import TokenBucket, Unlimited
from retention.sweep.breaker import Breaker
from retention.sweep.flight import Budget, Flight
from retention.sweep.flusher import Flusher
from retention.sweep.hooks import Hooks
from retention.sweep.probing import recent_ids
from retention.sweep.recheck import Recheck
from retention.sweep.results import Result
from retention.sweep.summary import SweepSummary

IN_SWEEP_WAIT = 30.0  # retries due sooner than this wait inside the sweep; later ones defer
LEASE = timedelta(minutes=5)  # renewed every LEASE / 3 while the sweep runs
log = get_logger("retention.sweep")


@dataclass
class ProviderRun:
    """One provider's part of a sweep; `halted` is set when it must send nothing more."""

    name: str
    client: ProviderClient
    limiter: TokenBucket | Unlimited
    semaphore: AdaptiveLimit
    breaker: Breaker = field(default_factory=Breaker)
    halted: asyncio.Event = field(default_factory=asyncio.Event)
    # kinds of object besides responses and conversations, checked once a sweep before the
    # first is deleted (probe_kind): None when they may be sent, else what becomes of them
    kinds: dict[str, asyncio.Task[Outcome | None]] = field(default_factory=dict)
    cannot_delete: dict[str, str] = field(default_factory=dict)  # kind: why not

    @property
    def stopped(self) -> bool:
        """Whether this provider's part of the sweep is over."""
        return self.halted.is_set()

    def halt(self) -> None:
        """Send nothing more; requests waiting to be retried give their records back."""
        self.halted.set()


class Sweep:
    """One pass over everything due now."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        policies: PolicySet | Callable[[], PolicySet],
        clients: dict[str, ProviderClient],
        *,
        limit: int | None = None,
        owner: str,
        clock: Callable[[], datetime],
        hooks: Hooks | None = None,
        stop: asyncio.Event | None = None,
        replicas: int = 1,
    ) -> None:
        self.ledger, self.settings, self.clock, self.owner = ledger, settings, clock, owner
        self.policies = policies if callable(policies) else (lambda: policies)
        self.hooks = hooks or Hooks()
        self.stop = stop or asyncio.Event()
        cap = settings.sweep.max_deletes_per_sweep
        self.budget = Budget(min(cap, limit) if limit is not None else cap)
        self.report = SweepSummary(started_at=clock())
        self.flusher = Flusher(ledger, self.report, self.hooks, owner)
        self.recheck = Recheck(ledger, owner, self.policies, clock)
        self.items_deleted: dict[int, int] = {}  # conversation record ID: its items deleted
        self.runs = {
            name: ProviderRun(
                name,
                client,
                # the provider's ceiling is shared by every live replica sweeping it
                TokenBucket(p.rate_limit_per_s / replicas) if p.rate_limit_per_s else Unlimited(),
                AdaptiveLimit(p.max_concurrency),
            )
            for name, client in clients.items()
            for p in [settings.providers[name]]
        }

    async def run(self) -> SweepSummary:
        """Sweep every provider concurrently; returns the report once all is written.

        Setting `stop` ends claiming and sending; requests on the wire finish. However the
        sweep ends (cancelled, or a provider's part failed), every outcome already known is
        committed and this sweep's leases are given back."""
        self.flusher.start()
        renewer = asyncio.create_task(self._renew_leases())
        watcher = asyncio.create_task(self._halt_on_stop())
        try:
            results = await asyncio.gather(
                *(self._provider(run) for run in self.runs.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            renewer.cancel()
            watcher.cancel()
            try:
                await self.flusher.close()
            finally:
                await off_loop(self._release)
        self.report.finished_at = self.clock()
        return self.report

    async def _halt_on_stop(self) -> None:
        """Halt every provider once the caller sets `stop`."""
        await self.stop.wait()
        for run in self.runs.values():
            run.halt()

    def _release(self) -> None:
        """Give back this sweep's leases."""
        with self.ledger.transaction() as conn:
            queries.release_leases(conn, self.owner)

    async def _renew_leases(self) -> None:
        """Keep this sweep's leases alive while it runs (no one else may claim them)."""
        period = LEASE.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            try:
                await off_loop(self._extend)
            except Exception as exc:
                log.error("sweep.lease_renewal_failed", error=f"{type(exc).__name__}: {exc}")

    def _extend(self) -> None:
        """Move this sweep's lease expiry forward."""
        with self.ledger.transaction() as conn:
            queries.extend_leases(conn, self.owner, self.clock() + LEASE)

    async def _provider(self, run: ProviderRun) -> None:
        """Claim and delete this provider's due records until none are left or we must stop;
        on a failure, stop and wait for the requests already started; when cancelled, cut
        them (their records stay pending and are sent again later)."""
        flight = Flight()
        try:
            await self._claim_loop(run, flight)
        except asyncio.CancelledError:  # the grace period is over: cut the requests too
            flight.cancel()
            raise
        except BaseException:
            for other in self.runs.values():  # this sweep stops; the caller's event is left
                other.halt()  # alone, so the next sweep starts afresh
            raise
        finally:
            await flight.drain()
        if self.budget.left <= 0 and await off_loop(self._more_due, run.name):
            self.report.brake = True

    async def _claim_loop(self, run: ProviderRun, flight: Flight) -> None:
        """Keep about a batch of records in flight."""
        batch = self.settings.sweep.batch_size
        while not run.stopped and not self.stop.is_set():
            if len(flight) < max(1, batch // 2) and self.budget.left:
                records = await off_loop(self._claim, run.name, batch - len(flight))
                for record in records:
                    flight.start(self._delete(run, record))
                if records:
                    continue
            if not flight:
                return
            await flight.one_done()

    def _claim(self, provider: str, want: int) -> list[ClaimedRecord]:
        """Lease up to `want` due records, within the sweep's budget."""
        now = self.clock()
        with self.ledger.transaction() as conn:
            records = queries.claim_due(
                conn,
                provider=provider,
                now=now,
                limit=min(want, self.budget.left),
                owner=self.owner,
                lease_until=now + LEASE,
            )
        self.budget.take(len(records))
        self.report.requests += len(records)
        return records

    def _more_due(self, provider: str) -> bool:
        """Whether records are still due for `provider` (the brake held them back)."""
        with self.ledger.read() as conn:
            return queries.any_due(conn, self.clock(), provider)

    async def _delete(self, run: ProviderRun, record: ClaimedRecord) -> None:
        """Delete one record; whatever goes wrong, an outcome is recorded and the lease freed."""
        try:
            await self._attempts(run, record)
        except Exception as exc:
            log.error(
                "sweep.delete_crashed",
                response_id=record.response_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            self.flusher.put(
                Result(record, Outcome.ERROR, record.attempts, error=type(exc).__name__)
            )

    async def _attempts(self, run: ProviderRun, record: ClaimedRecord) -> None:
        """Send, and retry in the sweep while the wait is short.

        A 429 is the provider asking us to slow down, not a failed deletion: it is honoured
        but not counted towards `max_attempts` (a storm of them must not make an ID `failed`);
        after `max_attempts` of them in one sweep the ID waits for the next sweep. A failed
        connection is the provider's fault, not the ID's: it is treated as a 429, and once
        the breaker opens the record is given back as it was."""
        max_attempts = self.settings.sweep.max_attempts
        attempt, throttled = record.attempts, 0
        while True:
            kind, answer, verified = await self._attempt(run, record)
            if kind is Outcome.UNSUPPORTED:  # the provider's limit, not the ID's: no charge
                error = run.cannot_delete.get(record.object)
                return self.flusher.put(Result(record, kind, record.attempts, answer, error=error))
            if answer is None:  # stopped, or no longer due: nothing was sent
                return self.flusher.put(Result(record, kind, attempt))
            if answer.connection_failed and run.stopped:
                return self.flusher.put(Result(record, Outcome.STOPPED, attempt))
            throttle = answer.status == 429 or answer.connection_failed
            if throttle:
                throttled += 1
            else:
                attempt += 1
            if kind != Outcome.RETRY and kind != Outcome.UNCONFIRMED:
                return self._finish(run, record, kind, attempt, answer, verified)
            if not throttle and attempt >= max_attempts:
                error = f"gave up after {attempt} attempts: {answer.error or answer.status}"
                return self.flusher.put(
                    Result(record, Outcome.FAILED, attempt, answer, error=error)
                )
            # 429s and failures each back off on their own count
            delay = backoff(throttled if throttle else attempt, retry_after=answer.retry_after)
            next_at = self.clock() + timedelta(seconds=delay)
            if delay > IN_SWEEP_WAIT or throttled >= max_attempts or not self.budget.take():
                return self.flusher.put(Result(record, Outcome.DEFERRED, attempt, answer, next_at))
            self.report.requests += 1
            self.flusher.put(Result(record, Outcome.RETRY, attempt, answer, next_at))
            if await self._stopped_within(run, delay):
                return self.flusher.put(Result(record, Outcome.STOPPED, attempt))

    async def _stopped_within(self, run: ProviderRun, seconds: float) -> bool:
        """Wait `seconds`, or less if the provider's part of the sweep ends; whether it did."""
        try:
            await asyncio.wait_for(run.halted.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _finish(
        self,
        run: ProviderRun,
        record: ClaimedRecord,
        kind: Outcome,
        attempt: int,
        answer: Answer,
        verified: bool | None,
    ) -> None:
        """Queue a final outcome; 401/403 stops this provider's sweep."""
        if kind == Outcome.AUTH and not run.stopped:
            run.halt()
            self.report.auth_failed.append(run.name)
            self.flusher.auth_failed(run.name, answer)
        items = self.items_deleted.pop(record.id, None)
        self.flusher.put(Result(record, kind, attempt, answer, verified=verified, items=items))

    async def _attempt(
        self, run: ProviderRun, record: ClaimedRecord
    ) -> tuple[Outcome, Answer | None, bool | None]:
        """One DELETE (and the confirming GET when configured): (kind, answer, verified).

        Nothing is sent once the sweep stops or the provider refused our key, nor when the
        last look at the ledger says the record is no longer ours to delete now."""
        if record.object == ObjectKind.CHAT_COMPLETION:
            held_back = await self._kind_checked(run, record.object)
            if held_back is not None:
                return held_back, None, None
        if not await run.limiter.acquire(run.halted) or run.stopped or self.stop.is_set():
            return Outcome.STOPPED, None, None
        async with run.semaphore:
            if run.stopped or self.stop.is_set():
                return Outcome.STOPPED, None, None
            if not await self.recheck.may_send(record):
                return Outcome.SKIPPED, None, None  # held, changed or not due: never early
            if run.stopped or self.stop.is_set():  # halted while the last look ran
                return Outcome.STOPPED, None, None
            if record.object != ObjectKind.CONVERSATION:
                answer = await run.client.delete(record.response_id, record.object)
        if record.object == ObjectKind.CONVERSATION:
            return await self._conversation(run, record)
        run.semaphore.feedback(answer.status)
        self._observe(run, answer)
        if record.object != ObjectKind.RESPONSE and answer.status in (405, 501):
            # the route exists but deletes nothing (Llama Stack's stored chat completions)
            reason = f"DELETE of a {record.object} answered {answer.status}: it cannot be deleted"
            self._cannot_delete(run, record.object, reason, answer.status)
            return Outcome.UNSUPPORTED, answer, None
        outcome = classify(answer.status, refused=answer.refused)
        if outcome is Outcome.DELETED and self.settings.providers[run.name].verify_after_delete:
            return await self._confirm(run, record, answer)
        return outcome, answer, None

    async def _kind_checked(self, run: ProviderRun, kind: str) -> Outcome | None:
        """Before the first `kind` (a stored chat completion) of this sweep is deleted, once:
        whether the provider can delete that kind at all and this key sees them (probe_kind).
        None: send; else what becomes of the record unsent (a kind found undeletable in this
        sweep, by a DELETE too, is sent no more)."""
        if kind in run.cannot_delete:
            return Outcome.UNSUPPORTED
        check = run.kinds.get(kind)
        if check is None:
            check = run.kinds[kind] = asyncio.create_task(self._check_kind(run, kind))
        return await asyncio.shield(check)

    async def _check_kind(self, run: ProviderRun, kind: str) -> Outcome | None:
        """probe_kind, and what its verdict does: a kind the provider cannot delete stays
        pending, charged nothing; a key that cannot see them, or a refusal, stops the
        provider's part of the sweep as its probe would have."""
        provider = self.settings.providers[run.name]
        sample = await off_loop(recent_ids, self.ledger, provider, self.clock(), ObjectKind(kind))
        verdict = await probe_kind(run.client, ObjectKind(kind), sample)
        if verdict.ok:
            return None
        if verdict.event == Event.PROVIDER_CANNOT_DELETE:
            self._cannot_delete(run, kind, verdict.reason, verdict.http_status)
            return Outcome.UNSUPPORTED
        assert verdict.event is not None
        if not run.stopped:
            run.halt()
            self.report.fault(run.name, verdict.event, verdict.reason)
            if verdict.event == Event.PROVIDER_AUTH_FAILED:
                self.report.auth_failed.append(run.name)
            self.flusher.fault(
                verdict.event,
                run.name,
                http_status=verdict.http_status,
                error=verdict.reason,
                details={"check": verdict.check, "stage": "probe", "object": kind},
            )
        return Outcome.STOPPED

    def _cannot_delete(self, run: ProviderRun, kind: str, reason: str, status: int | None) -> None:
        """Note, once a sweep, that this provider cannot delete `kind`: its records stay
        pending and the event is written (once, until one is deleted: Flusher)."""
        if kind in run.cannot_delete:
            return
        run.cannot_delete[kind] = reason
        log.error(Event.PROVIDER_CANNOT_DELETE, provider=run.name, object=kind, error=reason)
        self.flusher.cannot_delete(run.name, kind, reason, status)

    async def _conversation(
        self, run: ProviderRun, record: ClaimedRecord
    ) -> tuple[Outcome, Answer | None, bool | None]:
        """Delete a conversation: its items first, a page at a time, listed from the start
        again after each page (some servers ignore `after`) until a listing comes back empty;
        then the conversation. Each page's deletions are committed with their count, so a
        deletion cut by a crash resumes where it was, counting on."""
        client, cid = run.client, record.response_id
        # counted on from the ledger: earlier sweeps' pages (a 429's wait, a crash) count too
        deleted = self.items_deleted.setdefault(record.id, record.items_deleted)
        first = True
        while True:
            # the last look again before each page and before the conversation itself: a
            # hold placed, or a new turn that moved the deadline, since the previous one wins
            if not first and not await self.recheck.may_send(record):
                return Outcome.SKIPPED, None, None
            first = False
            listing = await self._request(run, lambda: client.conversation_items(cid))
            if listing is None:
                return Outcome.STOPPED, None, None
            answer, items = listing
            if not _success(answer):
                return classify(answer.status), answer, None  # 404: the conversation is gone
            if not items:
                break
            answers = await asyncio.gather(
                *(self._request(run, _item_deletion(client, cid, i)) for i in items)
            )
            gone = [a for a in answers if a is not None and (_success(a[0]) or a[0].status == 404)]
            deleted += len(gone)
            self.items_deleted[record.id] = deleted
            await off_loop(self._items_progress, record, len(gone), deleted)
            for other in answers:
                if other is None:
                    return Outcome.STOPPED, None, None
                if other not in gone:
                    return classify(other[0].status), other[0], None
        sent = await self._request(run, lambda: _alone(client.delete_conversation(cid)))
        if sent is None:
            return Outcome.STOPPED, None, None
        outcome = classify(sent[0].status, refused=sent[0].refused)
        if (
            outcome is not Outcome.DELETED
            or not self.settings.providers[run.name].verify_after_delete
        ):
            return outcome, sent[0], None
        check = await self._request(run, lambda: client.conversation_items(cid))
        if check is None:
            return Outcome.STOPPED, None, None
        if check[0].status == 404:
            return Outcome.DELETED, sent[0], True
        still = Answer(
            check[0].status, check[0].request_id, None, "items still listed after DELETE"
        )
        return Outcome.UNCONFIRMED, still, None

    async def _request(
        self, run: ProviderRun, send: Callable[[], Coroutine[Any, Any, tuple[Answer, list[str]]]]
    ) -> tuple[Answer, list[str]] | None:
        """One request of a conversation's deletion, within the provider's rate and
        concurrency; None when the sweep stopped first (the request is never sent)."""
        if not await run.limiter.acquire(run.halted) or run.stopped or self.stop.is_set():
            return None
        async with run.semaphore:
            result = await send()
        run.semaphore.feedback(result[0].status)
        self._observe(run, result[0])
        return result

    def _items_progress(self, record: ClaimedRecord, count: int, total: int) -> None:
        """Commit a page of a conversation's items deleted, with its count."""
        with self.ledger.write() as tx:
            queries.update_owned(
                tx.conn, record.id, self.owner, items_deleted=total, updated_at=tx.now
            )
            tx.record_event(
                Event.CONVERSATION_ITEMS_DELETED,
                record,
                details={"items": count, "items_so_far": total},
            )

    def _observe(self, run: ProviderRun, answer: Answer) -> None:
        """Tell the hooks and the breaker; pause the provider when the breaker opens."""
        self.hooks.on_request(run.name, answer.status)
        if not run.breaker.observe(answer) or run.stopped:
            return
        run.halt()
        reason = (
            f"{run.breaker.threshold} connections in a row failed ({answer.error}); paused for "
            "this sweep with no attempt charged, the next sweep probes again"
        )
        self.report.fault(run.name, UNREACHABLE, reason)
        self.flusher.fault(UNREACHABLE, run.name, error=reason, details={"check": "breaker"})

    async def _confirm(
        self, run: ProviderRun, record: ClaimedRecord, deleted: Answer
    ) -> tuple[Outcome, Answer | None, bool | None]:
        """GET after a 2xx DELETE: only a 404 confirms the deletion."""
        await run.limiter.acquire(None)
        async with run.semaphore:
            check = await run.client.get(record.response_id, record.object)
        self._observe(run, check)
        if check.status == 404:
            return Outcome.DELETED, deleted, True
        if check.status is not None and 200 <= check.status < 300:
            still = Answer(check.status, check.request_id, None, "still present after DELETE")
            return Outcome.UNCONFIRMED, still, None
        return (Outcome.AUTH if check.status in (401, 403) else Outcome.RETRY), check, None


def _success(answer: Answer) -> bool:
    """Whether the provider answered 2xx."""
    return answer.status is not None and 200 <= answer.status < 300


def _item_deletion(
    client: ProviderClient, conversation_id: str, item_id: str
) -> Callable[[], Coroutine[Any, Any, tuple[Answer, list[str]]]]:
    """The request deleting one item of a conversation, to send when its turn comes."""
    return lambda: _alone(client.delete_conversation_item(conversation_id, item_id))


async def _alone(sent: Coroutine[Any, Any, Answer]) -> tuple[Answer, list[str]]:
    """A request that lists nothing, shaped as a listing's answer."""
    return await sent, []
