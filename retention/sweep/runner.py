"""One sweep from start to finish: credentials, the sweeper lock, events, probes, execution.

Every ledger call is made in a worker thread (`off_loop`): a write may wait up to 30 s for
SQLite's write lock, and the event loop must go on answering meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import httpx

from retention.config.settings import Settings
from retention.core.policies import PolicySet
from retention.core.vocabulary import Event, MetaKey
from retention.ledger import queries
from retention.ledger.db import is_sqlite
from retention.ledger.holds import with_ledger_holds
from retention.ledger.ledger import Ledger
from retention.ledger.locks import sweeper_lock
from retention.ledger.loopguard import off_loop
from retention.provider.client import ProviderClient
from retention.services.erasure import settle
from retention.services.holds import lift_expired
from retention.sweep.executor import Sweep
from retention.sweep.hooks import Hooks
from retention.sweep.probing import is_auth, probe_with_ledger, record_faults
from retention.sweep.summary import SweepSummary


def replica_name() -> str:
    """This process, as the replica count knows it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_name() -> str:
    """A lease owner name unique to this process."""
    return f"{replica_name()}:{secrets.token_hex(3)}"


@contextmanager
def exclusive(ledger: Ledger) -> Iterator[None]:
    """On SQLite, be the only sweeper and take back leases a killed sweeper left behind."""
    if not is_sqlite(ledger.engine):
        yield
        return
    with sweeper_lock(Path(ledger.engine.url.database or "")):
        with ledger.transaction() as conn:
            queries.release_leases(conn)
        yield


async def sweep_once(
    ledger: Ledger,
    settings: Settings,
    policies: PolicySet | Callable[[], PolicySet],
    *,
    clock: Callable[[], datetime],
    limit: int | None = None,
    hooks: Hooks | None = None,
    stop: asyncio.Event | None = None,
    lock: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SweepSummary:
    """Run one sweep over every provider; `sweep.started`/`sweep.finished` frame it when
    anything is due (an idle sweep writes no events, only the time of the last sweep)."""
    keys = {name: p.api_key() for name, p in settings.providers.items()}
    with ExitStack() as stack:
        if lock:
            await off_loop(stack.enter_context, exclusive(ledger))
        # a placed hold whose `until` has come is lifted before anything is claimed
        policies = await off_loop(_lift_expired_holds, ledger, policies, clock())
        due = await off_loop(_count_due, ledger, clock())
        if due == 0:
            idle = await off_loop(_idle, ledger, clock())
            await off_loop(settle, ledger, clock())  # requests with nothing left, or overdue
            return idle
        live_for = 3 * settings.sweep.interval.total_seconds() + 60
        replicas = await off_loop(_started, ledger, due, limit, clock, live_for)
        clients = {
            name: ProviderClient(settings.providers[name], key, transport=transport)
            for name, key in keys.items()
        }
        try:
            report = await _probe_then_sweep(
                ledger,
                settings,
                clients,
                clock=clock,
                hooks=hooks or Hooks(),
                sweep=lambda healthy: Sweep(
                    ledger,
                    settings,
                    policies,
                    healthy,
                    limit=limit,
                    owner=owner_name(),
                    clock=clock,
                    hooks=hooks,
                    stop=stop,
                    replicas=replicas,
                ),
            )
        finally:
            for client in clients.values():
                await client.aclose()
        await off_loop(_finished, ledger, report.as_dict())
        await off_loop(settle, ledger, clock())  # erasure requests this sweep finished
    return report


def _lift_expired_holds(
    ledger: Ledger, policies: PolicySet | Callable[[], PolicySet], now: datetime
) -> PolicySet | Callable[[], PolicySet]:
    """Lift the placed holds whose `until` has come; the policies to sweep with after it. The
    daemon's (a callable) lifts them itself, just before, and follows the ledger."""
    if callable(policies) or not lift_expired(ledger, policies, now):
        return policies
    with ledger.read() as conn:
        return with_ledger_holds(conn, policies)


def _count_due(ledger: Ledger, now: datetime) -> int:
    """How many records are due at `now`."""
    with ledger.read() as conn:
        return queries.count_due(conn, now)


def _started(
    ledger: Ledger, due: int, limit: int | None, clock: Callable[[], datetime], live_for: float
) -> int:
    """Write `sweep.started` and this replica's heartbeat; how many replicas are live."""
    with ledger.write() as tx:
        tx.event(Event.SWEEP_STARTED, details={"due": due, "limit": limit})
        return queries.heartbeat(tx.conn, replica_name(), clock(), live_for=live_for)


def _finished(ledger: Ledger, summary: dict[str, object]) -> None:
    """Write `sweep.finished` with the sweep's summary, and keep the summary."""
    with ledger.write() as tx:
        tx.event(Event.SWEEP_FINISHED, details=summary)
        queries.set_meta(tx.conn, MetaKey.LAST_SWEEP, json.dumps(summary))


async def _probe_then_sweep(
    ledger: Ledger,
    settings: Settings,
    clients: dict[str, ProviderClient],
    *,
    clock: Callable[[], datetime],
    hooks: Hooks,
    sweep: Callable[[dict[str, ProviderClient]], Sweep],
) -> SweepSummary:
    """Probe each provider with work due; sweep those that pass; a failed probe stops its
    provider before any DELETE, with its event, and no record is touched."""
    due = await off_loop(_due_providers, ledger, list(clients), clock())
    probes = await probe_with_ledger(
        ledger, settings.providers, {n: clients[n] for n in due}, clock()
    )
    for result in probes.values():
        hooks.on_probe(result)
    await off_loop(record_faults, ledger, settings.providers, list(probes.values()))
    run = sweep({n: clients[n] for n in due if probes[n].ok})
    for result in probes.values():
        if not result.ok:
            assert result.event is not None
            run.report.fault(result.provider, result.event, result.reason)
            if is_auth(result):
                run.report.auth_failed.append(result.provider)
    return await run.run()


def _due_providers(ledger: Ledger, names: list[str], now: datetime) -> list[str]:
    """The providers with records due at `now`."""
    with ledger.read() as conn:
        return [name for name in names if queries.any_due(conn, now, name)]


def _idle(ledger: Ledger, now: datetime) -> SweepSummary:
    """Note an idle sweep's time; nothing else happened."""
    report = SweepSummary(started_at=now, finished_at=now)
    with ledger.transaction() as conn:
        queries.set_meta(conn, MetaKey.LAST_SWEEP, json.dumps(report.as_dict()))
    return report
