"""Prometheus metrics of the daemon, in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from retention.core.vocabulary import CLOSING, FINAL, STATES, Outcome
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.sweep.hooks import Hooks

if TYPE_CHECKING:
    from retention.evidence.witness import Witnesses

LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, float("inf"))
COUNTED = (*FINAL, Outcome.UNCONFIRMED, Outcome.DEFERRED)
REFRESH_S = 5.0


class Metrics:
    """Counters fed by sweeps, gauges read from the ledger when scraped."""

    def __init__(self, ledger: Ledger, clock: Callable[[], datetime]) -> None:
        self.ledger, self.clock = ledger, clock
        self.registry = CollectorRegistry()
        r = self.registry
        self.deletions = Counter(
            "retention_deletions", "Deletion outcomes.", ["provider", "outcome"], registry=r
        )
        self.requests = Counter(
            "retention_provider_requests",
            "Provider answers by status.",
            ["provider", "code"],
            registry=r,
        )
        self.lag = Histogram(
            "retention_deletion_lag_seconds",
            "Deleted-at minus deadline.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.sweep_duration = Histogram(
            "retention_sweep_duration_seconds", "Wall time of sweeps.", registry=r
        )
        self.sweep_errors = Counter("retention_sweep_errors", "Sweeps that raised.", registry=r)
        self.records = Gauge(
            "retention_ledger_records", "Ledger records by state.", ["state"], registry=r
        )
        self.overdue = Gauge(
            "retention_overdue_records", "Pending records past their deadline.", registry=r
        )
        self._refreshed = 0.0
        self._witnesses: _WitnessCollector | None = None

    def watch_witnesses(self, witnesses: Witnesses) -> None:
        """Expose `witnesses`' counts at every scrape (a later call replaces the earlier)."""
        if self._witnesses is None:
            self._witnesses = _WitnessCollector(witnesses)
            self.registry.register(self._witnesses)
        self._witnesses.witnesses = witnesses

    def hooks(self, progress: Callable[[int], None] | None = None) -> Hooks:
        """Sweep hooks that feed these metrics."""
        return Hooks(progress=progress, request=self._request, outcome=self._outcome)

    def _request(self, provider: str, status: int | None) -> None:
        """Count one provider answer."""
        self.requests.labels(provider, str(status) if status is not None else "error").inc()

    def _outcome(self, provider: str, kind: str, lag_s: float | None) -> None:
        """Count one outcome; deletions also feed the lag histogram."""
        if kind in COUNTED:
            self.deletions.labels(provider, kind).inc()
        if kind in CLOSING and lag_s is not None:
            self.lag.observe(max(0.0, lag_s))

    def refresh(self) -> None:
        """Read the ledger's gauges (at most every few seconds, whatever the scrape rate)."""
        if time.monotonic() - self._refreshed < REFRESH_S:
            return
        with self.ledger.read() as conn:
            counts = queries.counts_by_state(conn)
            overdue = queries.overdue_count(conn, self.clock())
        for state in STATES:
            self.records.labels(state).set(counts.get(state, 0))
        self.overdue.set(overdue)
        self._refreshed = time.monotonic()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        self.refresh()
        return generate_latest(self.registry)


class _WitnessCollector:
    """Checkpoint witness counts, read from the Witnesses object when scraped."""

    def __init__(self, witnesses: Witnesses) -> None:
        self.witnesses = witnesses

    def collect(self) -> Iterator[Metric]:
        """`retention_witness_checkpoints_total{witness,outcome}`, `retention_witness_spooled`."""
        w = self.witnesses
        total = CounterMetricFamily(
            "retention_witness_checkpoints",
            "Checkpoints witnesses took (sent), and attempts that failed (failed).",
            labels=["witness", "outcome"],
        )
        spooled = GaugeMetricFamily(
            "retention_witness_spooled",
            "Checkpoints a witness has not taken yet.",
            labels=["witness"],
        )
        for name in w.names:
            total.add_metric([name, "sent"], w.sent.get(name, 0))
            total.add_metric([name, "failed"], w.failed.get(name, 0))
            spooled.add_metric([name], w.spooled(name))
        yield total
        yield spooled
