"""The probes around a sweep: which recorded IDs to look up, probing every provider at once,
and the `provider.*` events a failed probe writes. `run` and `doctor` use the same code."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import select

from retention.config.settings import ProviderSettings
from retention.core.vocabulary import ObjectKind, State
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.ledger.loopguard import off_loop
from retention.provider.client import ProviderClient
from retention.provider.probe import AUTH_FAILED, SAMPLE, ProbeResult, probe


def recent_ids(
    ledger: Ledger,
    provider: ProviderSettings,
    now: datetime,
    kind: ObjectKind = ObjectKind.RESPONSE,
) -> list[str]:
    """Up to SAMPLE pending IDs of `kind` at `provider` recorded most recently; responses
    only when their `created_at` lies within its storage period (older ones the provider may
    have expired on its own). One kind at a time: the probe asks `GET /responses/{id}`, where
    a conversation's ID answers 404 whatever the key."""
    r = queries.R
    query = select(r.response_id).where(
        r.provider == provider.name, r.state == State.PENDING, r.object == kind.value
    )
    if kind == ObjectKind.RESPONSE:
        query = query.where(r.created_at >= now - provider.storage_period)
    query = query.order_by(r.id.desc()).limit(SAMPLE)  # ids grow: the newest first
    with ledger.read() as conn:
        return list(conn.execute(query).scalars())


async def probe_all(
    clients: dict[str, ProviderClient], ids: dict[str, list[str]]
) -> dict[str, ProbeResult]:
    """Probe every provider concurrently."""
    names = list(clients)
    results = await asyncio.gather(*(probe(clients[n], ids.get(n, [])) for n in names))
    return dict(zip(names, results, strict=True))


async def probe_with_ledger(
    ledger: Ledger,
    providers: dict[str, ProviderSettings],
    clients: dict[str, ProviderClient],
    now: datetime,
) -> dict[str, ProbeResult]:
    """Probe `clients`, looking up each provider's recent IDs in the ledger first."""
    ids = await off_loop(
        lambda: {name: recent_ids(ledger, providers[name], now) for name in clients}
    )
    return await probe_all(clients, ids)


def record_faults(
    ledger: Ledger, providers: dict[str, ProviderSettings], results: list[ProbeResult]
) -> None:
    """Write each failed probe as its `provider.*` event, in one transaction."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    with ledger.write() as tx:
        for result in failed:
            assert result.event is not None
            tx.event(
                result.event,
                provider=result.provider,
                account=providers[result.provider].account_id,
                http_status=result.http_status,
                error=result.reason,
                details={"check": result.check, "stage": "probe"},
            )


def is_auth(result: ProbeResult) -> bool:
    """Whether the probe failed because the provider refused our credentials."""
    return result.event == AUTH_FAILED
