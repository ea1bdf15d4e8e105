"""Erasure requests in the compliance report and the daemon's metrics, on a real ledger and
the stand-in: counted by requested_at, completed, open, overdue, time to completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from retention.daemon.metrics import Metrics
from retention.services.erasure import checked_request, request_erasure
from retention.views.report import compliance_report


def _requests(make_env):  # type: ignore[no-untyped-def]
    """Alice's request completed by a sweep, nobody's completed at once, Bob's left open."""
    env = make_env()
    env.record("a_1", "a_2", age=timedelta(minutes=1), metadata={"user_id": "alice"})
    env.record("b_1", age=timedelta(minutes=1), metadata={"user_id": "bob"})
    for rid in ("a_1", "a_2", "b_1"):
        env.standin.store.create({"id": rid})
    for who in ("alice", "nobody"):
        request = checked_request({"user_id": who}, "asked", None, env.settings)
        request_erasure(env.ledger, env.settings, request)
    env.sweep()
    request = checked_request({"user_id": "bob"}, "asked", None, env.settings)
    request_erasure(env.ledger, env.settings, request)
    return env


def _report(env, now, **window):  # type: ignore[no-untyped-def]
    """The report's erasure figures at `now`."""
    found = compliance_report(
        env.ledger, since=window.get("since"), until=window.get("until"), tolerance_s=60, now=now
    )
    return found["erasures"]


def test_the_report_counts_erasures_by_when_they_were_requested(make_env):  # type: ignore[no-untyped-def]
    """Three requests: two completed within seconds, one open; overdue once past its due date;
    none before the window."""
    env = _requests(make_env)
    now = datetime.now(UTC)
    figures = _report(env, now)
    counts = {k: figures[k] for k in ("requested", "completed", "open", "overdue")}
    assert counts == {"requested": 3, "completed": 2, "open": 1, "overdue": 0}
    assert 0 <= figures["completion_p50_s"] <= figures["completion_max_s"] < 60
    assert _report(env, now + timedelta(days=31))["overdue"] == 1
    assert _report(env, now, until=now - timedelta(hours=1))["requested"] == 0
    assert _report(env, now, since=now + timedelta(seconds=1))["completion_p50_s"] is None


def _scrape(metrics: Metrics) -> dict[str, float]:
    """Every sample of a scrape by name (the unlabelled ones, and histogram buckets by le)."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            le = sample.labels.get("le")
            samples[sample.name + (f"[{le}]" if le else "")] = sample.value
    return samples


def test_metrics_read_erasures_from_the_ledger(make_env):  # type: ignore[no-untyped-def]
    """Open, overdue (by the clock), requested and completed totals, and the completion
    histogram, as the ledger holds them."""
    env = _requests(make_env)
    now = datetime.now(UTC)
    samples = _scrape(Metrics(env.ledger, lambda: now))
    assert samples["retention_erasures_open"] == 1
    assert samples["retention_erasures_overdue"] == 0
    assert samples["retention_erasures_requested_total"] == 3
    assert samples["retention_erasures_completed_total"] == 2
    assert samples["retention_erasure_completion_seconds_count"] == 2
    assert samples["retention_erasure_completion_seconds_bucket[60.0]"] == 2
    assert samples["retention_erasure_completion_seconds_bucket[+Inf]"] == 2
    later = _scrape(Metrics(env.ledger, lambda: now + timedelta(days=31)))
    assert later["retention_erasures_overdue"] == 1
