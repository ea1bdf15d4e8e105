"""Prometheus metrics of the daemon, in a registry of its own: counters fed by sweeps, and
figures read from the ledger when scraped (records by state, erasure requests, the last sweep),
from the daemon's last probes and from its witnesses and notification sinks."""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from sqlalchemy import Connection, func, or_, select

from retention.core.times import parse_time
from retention.core.vocabulary import (
    CLOSING,
    FINAL,
    STATES,
    ErasureState,
    MetaKey,
    ObjectKind,
    Outcome,
)
from retention.errors import InputError
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.ledger.models import Erasure
from retention.sweep.hooks import Hooks

if TYPE_CHECKING:
    from retention.evidence.witness import Witnesses
    from retention.notify.notifier import Notifier

LAG_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, float("inf"))
COUNTED = (*FINAL, Outcome.UNCONFIRMED, Outcome.DEFERRED)
REFRESH_S = 5.0
# seconds from an erasure request to its completion: at once, after a sweep or a retry storm,
# up to the 30-day deadline and past it
COMPLETION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 21600, 86400, 604800, 2592000)


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
        self.ingest_commits = Counter(
            "retention_ingest_commits",
            "Transactions that committed ingest requests (group commit: one for every request "
            "that arrived while the previous one ran).",
            registry=r,
        )
        self.ingest_requests = Counter(
            "retention_ingest_requests", "Ingest requests committed.", registry=r
        )
        self.ingest_ids = Counter(
            "retention_ingest_ids",
            "IDs of committed ingest requests: new (`recorded`), or tracked already.",
            ["result"],
            registry=r,
        )
        for result in ("recorded", "duplicate"):
            self.ingest_ids.labels(result)  # shown at 0 before the first request
        self.records = Gauge(
            "retention_ledger_records", "Ledger records by state.", ["state"], registry=r
        )
        self.conversations = Gauge(
            "retention_ledger_conversations",
            "Ledger records of conversations by state (counted in retention_ledger_records too).",
            ["state"],
            registry=r,
        )
        self.overdue = Gauge(
            "retention_overdue_records", "Pending records past their deadline.", registry=r
        )
        self.last_sweep = Gauge(
            "retention_last_sweep_timestamp_seconds",
            "Unix time the last sweep on this ledger finished (any replica or `retention "
            "sweep`; 0 before the first).",
            registry=r,
        )
        self._refreshed = 0.0
        self._witnesses: _WitnessCollector | None = None
        self._notifier: _NotifyCollector | None = None
        self._probes: _ProbeCollector | None = None
        self.erasures = _ErasureCollector()
        self.registry.register(self.erasures)

    def watch_witnesses(self, witnesses: Witnesses) -> None:
        """Expose `witnesses`' counts at every scrape (a later call replaces the earlier)."""
        if self._witnesses is None:
            self._witnesses = _WitnessCollector(witnesses)
            self.registry.register(self._witnesses)
        self._witnesses.witnesses = witnesses

    def watch_notifier(self, notifier: Notifier) -> None:
        """Expose the notification sinks' counts at every scrape (none without sinks)."""
        if self._notifier is None:
            self._notifier = _NotifyCollector(notifier)
            self.registry.register(self._notifier)
        self._notifier.notifier = notifier

    def watch_probes(self, probes: Mapping[str, Any]) -> None:
        """Expose each provider's last probe (a ProbeResult by provider name) at every scrape."""
        if self._probes is None:
            self._probes = _ProbeCollector(probes)
            self.registry.register(self._probes)
        self._probes.probes = probes

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
            conversations = queries.counts_of_objects(conn).get(ObjectKind.CONVERSATION, {})
            overdue = queries.overdue_count(conn, self.clock())
            self.erasures.read(conn, self.clock())
            last_sweep = queries.get_meta(conn, MetaKey.LAST_SWEEP)
        for state in STATES:
            self.records.labels(state).set(counts.get(state, 0))
            self.conversations.labels(state).set(conversations.get(state, 0))
        self.overdue.set(overdue)
        self.last_sweep.set(_finished_at(last_sweep))
        self._refreshed = time.monotonic()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        self.refresh()
        return generate_latest(self.registry)


def _finished_at(summary: str | None) -> float:
    """Unix time of `finished_at` in the last sweep's summary (0 when none, or unreadable)."""
    try:
        finished = json.loads(summary)["finished_at"] if summary else None
        return parse_time(finished).timestamp() if finished else 0.0
    except (ValueError, TypeError, KeyError, InputError):
        return 0.0


class _ProbeCollector:
    """Each provider's last probe, as the daemon keeps it for /readyz."""

    def __init__(self, probes: Mapping[str, Any]) -> None:
        self.probes = probes

    def collect(self) -> Iterator[Metric]:
        """`retention_provider_probe_ok{provider}`: 1 when its last probe passed, else 0."""
        family = GaugeMetricFamily(
            "retention_provider_probe_ok",
            "1 when the provider's last probe passed; 0 when it failed (auth, misconfigured, "
            "unreachable: see /readyz).",
            labels=["provider"],
        )
        for name, result in sorted(self.probes.items()):
            family.add_metric([name], 1.0 if result.ok else 0.0)
        yield family


class _NotifyCollector:
    """Notification sink counts, read from the Notifier when scraped."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        """`retention_notify_sent_total{sink}`, `retention_notify_failures_total{sink}`,
        `retention_notify_dropped_total{sink}`, `retention_notify_spooled{sink}`."""
        sent = CounterMetricFamily(
            "retention_notify_sent", "Notifications delivered, per sink.", labels=["sink"]
        )
        failures = CounterMetricFamily(
            "retention_notify_failures",
            "Delivery attempts that failed, per sink.",
            labels=["sink"],
        )
        dropped = CounterMetricFamily(
            "retention_notify_dropped",
            "Notifications lost: a full spool or queue, refused by the receiver (or redirected), "
            "or a syslog message that could not be sent.",
            labels=["sink"],
        )
        spooled = GaugeMetricFamily(
            "retention_notify_spooled",
            "Notifications not delivered yet (queued, or in a webhook's spool).",
            labels=["sink"],
        )
        for figures in self.notifier.figures():
            sent.add_metric([figures.name], figures.sent)
            failures.add_metric([figures.name], figures.failed)
            dropped.add_metric([figures.name], figures.dropped)
            spooled.add_metric([figures.name], figures.waiting)
        yield from (sent, failures, dropped, spooled)


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


class _ErasureCollector:
    """Erasure requests as the ledger holds them, read at refresh (so every replica of a
    shared ledger reports the same figures, and a restart loses nothing)."""

    def __init__(self) -> None:
        self.open = self.overdue = self.requested = self.completed = 0
        self.buckets = [0] * (len(COMPLETION_BUCKETS) + 1)  # per bucket, the last one +Inf
        self.seconds = 0.0
        self._timed = -1  # completed requests the histogram counts

    def read(self, conn: Connection, now: datetime) -> None:
        """Count the requests; the histogram is read again only when more have completed."""
        e = Erasure
        by_state = dict(conn.execute(select(e.state, func.count()).group_by(e.state)).all())
        self.open = int(by_state.get(ErasureState.OPEN.value, 0))
        self.completed = int(by_state.get(ErasureState.COMPLETED.value, 0))
        self.requested = sum(int(n) for n in by_state.values())
        self.overdue = int(
            conn.execute(
                select(func.count()).where(
                    e.state == ErasureState.OPEN.value,
                    or_(e.due_by < now, e.overdue_at.is_not(None)),
                )
            ).scalar_one()
        )
        if self.completed != self._timed:
            self._time(conn)
            self._timed = self.completed

    def _time(self, conn: Connection) -> None:
        """The histogram of completion times, from every completed request."""
        e = Erasure
        rows = conn.execute(
            select(e.requested_at, e.completed_at).where(
                e.state == ErasureState.COMPLETED.value, e.completed_at.is_not(None)
            )
        ).all()
        buckets, total = [0] * (len(COMPLETION_BUCKETS) + 1), 0.0
        for requested_at, completed_at in rows:
            if completed_at is None:  # the query excludes it; for the type checker
                continue
            seconds = max(0.0, (completed_at - requested_at).total_seconds())
            total += seconds
            buckets[bisect_left(COMPLETION_BUCKETS, seconds)] += 1
        self.buckets, self.seconds = buckets, total

    def collect(self) -> Iterator[Metric]:
        """`retention_erasures_open`, `retention_erasures_overdue`,
        `retention_erasures_requested_total`, `retention_erasures_completed_total`,
        `retention_erasure_completion_seconds`."""
        yield GaugeMetricFamily(
            "retention_erasures_open", "Erasure requests not completed yet.", value=self.open
        )
        yield GaugeMetricFamily(
            "retention_erasures_overdue",
            "Open erasure requests past their due date.",
            value=self.overdue,
        )
        yield CounterMetricFamily(
            "retention_erasures_requested", "Erasure requests made.", value=self.requested
        )
        yield CounterMetricFamily(
            "retention_erasures_completed", "Erasure requests completed.", value=self.completed
        )
        cumulative, running = [], 0
        for bound, count in zip((*COMPLETION_BUCKETS, float("inf")), self.buckets, strict=True):
            running += count
            cumulative.append((floatToGoString(bound), running))
        yield HistogramMetricFamily(
            "retention_erasure_completion_seconds",
            "Completed erasure requests: completion time minus request time.",
            buckets=cumulative,
            sum_value=self.seconds,
        )
