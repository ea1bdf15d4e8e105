"""The compliance report: deletions on time, late, and late on arrival (already past their
deadline when the ledger first saw them: no sweep could have been on time), lag past the
deadline, absent, failed, held; per policy and per provider; and data subjects' erasure
requests: how many, completed, open, overdue, time to completion. `summarise` and
`erasure_figures` are pure; `compliance_report` reads the ledger."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from retention.core.times import format_time
from retention.core.vocabulary import CLOSED_STATES, CLOSING, ErasureState, State
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.ledger.models import Erasure


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0..100) of `values`."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _bucket() -> dict[str, Any]:
    """An empty group of counts."""
    return {
        "deleted": 0,
        "on_time": 0,
        "late": 0,
        "late_on_arrival": 0,
        "absent": 0,
        "failed": 0,
        "lags": [],
    }


def timeliness(
    deadline: datetime, first_seen: datetime, closed: datetime, tolerance_s: float
) -> str:
    """`late_on_arrival` when the deadline had passed before the ledger first saw the ID,
    else `on_time` or `late` by the lag past the deadline."""
    if deadline < first_seen:
        return "late_on_arrival"
    return "on_time" if (closed - deadline).total_seconds() <= tolerance_s else "late"


def lag_s(deadline: datetime, first_seen: datetime, closed: datetime) -> float:
    """Seconds from when deletion was first both due and possible (the deadline, or the first
    sighting when that came later) to the closing."""
    return (closed - max(deadline, first_seen)).total_seconds()


def summarise(
    rows: Iterable[tuple[str, str, str, datetime, datetime, datetime, str]],
    *,
    tolerance_s: float,
) -> dict[str, Any]:
    """Group (provider, policy, state, deadline, closed_at, first_seen_at, object) rows into
    the report's figures."""
    groups: dict[str, dict[str, dict[str, Any]]] = {
        "total": defaultdict(_bucket),
        "policy": defaultdict(_bucket),
        "provider": defaultdict(_bucket),
        "object": defaultdict(_bucket),
    }
    for provider, policy, state, deadline, closed_at, first_seen, what in rows:
        lag = lag_s(deadline, first_seen, closed_at)
        kind_of = timeliness(deadline, first_seen, closed_at, tolerance_s)
        keys = (("total", "all"), ("policy", policy), ("provider", provider), ("object", what))
        for kind, key in keys:
            bucket = groups[kind][key]
            bucket[state] += 1
            if state in CLOSING:
                bucket["lags"].append(lag)
            if state == State.DELETED:
                bucket[kind_of] += 1
    return {
        kind: {key: _finish(b) for key, b in sorted(found.items())}
        for kind, found in groups.items()
    }


def _finish(bucket: dict[str, Any]) -> dict[str, Any]:
    """Counts and lag percentiles (whole seconds) of one group."""
    lags = bucket.pop("lags")
    for name, q in (("lag_p50_s", 50), ("lag_p99_s", 99), ("lag_max_s", 100)):
        value = percentile(lags, q)
        bucket[name] = None if value is None else round(value)
    return bucket


def erasure_figures(
    rows: Iterable[tuple[str, datetime, datetime, datetime | None, datetime | None]],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Count (state, requested_at, due_by, completed_at, overdue_at) rows of erasure requests:
    requested, completed, open, overdue (open past `due_by` now, flagged overdue, or completed
    after `due_by`), and time to completion (completed_at - requested_at) p50, p99 and max in
    whole seconds (None when none completed)."""
    figures = {"requested": 0, "completed": 0, "open": 0, "overdue": 0}
    spans: list[float] = []
    for state, requested_at, due_by, completed_at, overdue_at in rows:
        figures["requested"] += 1
        if state == ErasureState.COMPLETED and completed_at is not None:
            figures["completed"] += 1
            spans.append(max(0.0, (completed_at - requested_at).total_seconds()))
            late = completed_at > due_by
        else:
            figures["open"] += 1
            late = now > due_by
        if late or overdue_at is not None:
            figures["overdue"] += 1
    result: dict[str, Any] = dict(figures)
    for name, q in (("completion_p50_s", 50), ("completion_p99_s", 99), ("completion_max_s", 100)):
        value = percentile(spans, q)
        result[name] = None if value is None else round(value)
    return result


def compliance_report(
    ledger: Ledger,
    *,
    since: datetime | None,
    until: datetime | None,
    tolerance_s: float,
    now: datetime,
) -> dict[str, Any]:
    """The report for records closed in [since, until), with what is held and overdue now, and
    the erasure requests made in [since, until) as they stand now."""
    r = queries.R
    query = select(
        r.provider, r.policy, r.state, r.deadline, r.closed_at, r.first_seen_at, r.object
    ).where(r.state.in_(CLOSED_STATES), r.closed_at.is_not(None))
    if since is not None:
        query = query.where(r.closed_at >= since)
    if until is not None:
        query = query.where(r.closed_at < until)
    with ledger.read() as conn:
        figures = summarise(conn.execute(query), tolerance_s=tolerance_s)
        held = conn.execute(select(func.count()).where(r.state == State.HELD)).scalar_one()
        overdue = queries.overdue_count(conn, now)
        erasures = erasure_figures(conn.execute(_erasure_query(since, until)), now=now)
    total = figures["total"].get("all", _finish(_bucket()))
    return {
        "since": format_time(since),
        "until": format_time(until),
        "generated_at": format_time(now),
        "on_time_tolerance_s": int(tolerance_s),
        "total": total,
        "held_now": held,
        "overdue_now": overdue,
        "by_policy": figures["policy"],
        "by_provider": figures["provider"],
        "by_object": figures["object"],  # responses and conversations, each on its own
        "erasures": erasures,
    }


def _erasure_query(since: datetime | None, until: datetime | None) -> Any:
    """The erasure requests made in [since, until)."""
    e = Erasure
    query = select(e.state, e.requested_at, e.due_by, e.completed_at, e.overdue_at)
    if since is not None:
        query = query.where(e.requested_at >= since)
    if until is not None:
        query = query.where(e.requested_at < until)
    return query
