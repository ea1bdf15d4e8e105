"""The compliance report's figures and its table: late on arrival apart from late, lags as
`2d 3h` in the table and seconds in JSON, dates accepted as times; erasure requests counted
with their time to completion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retention.cli.report_view import render_report, span
from retention.core.times import parse_time
from retention.errors import InputError
from retention.views.report import erasure_figures, lag_s, summarise, timeliness

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def row(state: str, *, deadline: datetime, seen: datetime, closed: datetime) -> tuple:
    """A (provider, policy, state, deadline, closed_at, first_seen_at, object) row."""
    return ("fireworks", "default", state, deadline, closed, seen, "response")


def test_past_its_deadline_on_arrival_is_not_late() -> None:
    """An ID first seen after its deadline is late on arrival, whatever its lag."""
    assert timeliness(NOW - DAY, NOW, NOW + DAY, 60) == "late_on_arrival"
    assert timeliness(NOW, NOW - DAY, NOW + timedelta(seconds=30), 60) == "on_time"
    assert timeliness(NOW, NOW - DAY, NOW + timedelta(hours=1), 60) == "late"


def test_lag_counts_from_when_deletion_became_possible() -> None:
    """The lag starts at the deadline, or at the first sighting when that came later."""
    assert lag_s(NOW - 30 * DAY, NOW, NOW + timedelta(minutes=2)) == 120
    assert lag_s(NOW, NOW - DAY, NOW + timedelta(minutes=2)) == 120


def test_summary_counts_late_on_arrival_apart() -> None:
    """Deleted splits into on time, late and late on arrival; absent and failed stand apart."""
    rows = [
        row("deleted", deadline=NOW - 40 * DAY, seen=NOW, closed=NOW + timedelta(seconds=5)),
        row("deleted", deadline=NOW - 40 * DAY, seen=NOW, closed=NOW + timedelta(seconds=9)),
        row("deleted", deadline=NOW, seen=NOW - DAY, closed=NOW + timedelta(seconds=10)),
        row("deleted", deadline=NOW, seen=NOW - DAY, closed=NOW + 2 * DAY),
        row("absent", deadline=NOW, seen=NOW - DAY, closed=NOW),
        row("failed", deadline=NOW, seen=NOW - DAY, closed=NOW),
    ]
    total = summarise(rows, tolerance_s=60)["total"]["all"]
    counts = {k: total[k] for k in ("deleted", "on_time", "late", "late_on_arrival")}
    assert counts == {"deleted": 4, "on_time": 1, "late": 1, "late_on_arrival": 2}
    assert (total["absent"], total["failed"], total["lag_max_s"]) == (1, 1, 2 * 86400)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4706677, "54d 11h"), (2 * 86400 + 3 * 3600 + 59, "2d 3h"), (3600, "1h"), (42, "42s"),
     (0, "0s"), (None, None)],
)  # fmt: skip
def test_spans_are_human(seconds: float | None, text: str | None) -> None:
    """Seconds shown as the two largest units."""
    assert span(seconds) == text


def test_table_shows_spans_and_json_keeps_seconds() -> None:
    """The rendered table says `54d 11h`; the data it renders still holds the seconds."""
    figures = {
        "deleted": 1,
        "on_time": 0,
        "late": 1,
        "late_on_arrival": 0,
        "absent": 0,
        "failed": 0,
        "lag_p50_s": 4706677,
        "lag_p99_s": 4706677,
        "lag_max_s": 4706677,
    }
    data = {
        "since": None,
        "until": None,
        "on_time_tolerance_s": 60,
        "total": figures,
        "held_now": 0,
        "overdue_now": 0,
        "by_policy": {"default": figures},
        "by_provider": {},
    }
    text = render_report(data, markdown=False)
    assert "54d 11h" in text and "4706677" not in text and "within 1m" in text
    assert "LATE_ON_ARRIVAL" in text
    assert "| all | 1 | 0 | 1 | 0 | 0 | 0 | 54d 11h |" in render_report(data, markdown=True)
    assert data["total"]["lag_max_s"] == 4706677


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("1796083200", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_a_date_is_midnight_utc(value: str, moment: datetime) -> None:
    """A bare date means its first moment in UTC; RFC 3339 and unix seconds still work."""
    assert parse_time(value, field="--since") == moment


@pytest.mark.parametrize("value", ["2026-12-32", "2026-12-01T08:00", "01/12/2026"])
def test_bad_dates_are_refused(value: str) -> None:
    """A date that does not exist, or a time without a zone, is an input error naming forms."""
    with pytest.raises(InputError, match="a date"):
        parse_time(value, field="--since")


def erasure(
    state: str, *, took: timedelta | None, due_in: timedelta = 30 * DAY, flagged: bool = False
) -> tuple:
    """A (state, requested_at, due_by, completed_at, overdue_at) row requested at NOW."""
    completed = NOW + took if took is not None else None
    return (state, NOW, NOW + due_in, completed, NOW + due_in if flagged else None)


def test_erasures_are_counted_with_their_time_to_completion() -> None:
    """Requested, completed, open, overdue; completion p50/p99/max in whole seconds."""
    rows = [
        erasure("completed", took=timedelta(seconds=3)),
        erasure("completed", took=timedelta(seconds=40)),
        erasure("completed", took=31 * DAY, flagged=True),  # completed late, flagged
        erasure("completed", took=2 * DAY, due_in=DAY),  # completed late, never flagged
        erasure("open", took=None),
        erasure("open", took=None, due_in=-DAY),  # open past its due date
    ]
    figures = erasure_figures(rows, now=NOW + timedelta(hours=1))
    assert figures == {
        "requested": 6,
        "completed": 4,
        "open": 2,
        "overdue": 3,
        "completion_p50_s": 40,
        "completion_p99_s": 31 * 86400,
        "completion_max_s": 31 * 86400,
    }
    assert erasure_figures([], now=NOW)["completion_p50_s"] is None


def test_erasures_table_shows_spans_and_json_keeps_seconds() -> None:
    """The erasure table says `2d` for 172800 seconds, in plain and Markdown output."""
    figures = erasure_figures([erasure("completed", took=2 * DAY)], now=NOW + 3 * DAY)
    empty = dict.fromkeys(("deleted", "on_time", "late", "late_on_arrival", "absent", "failed"), 0)
    data = {
        "since": None,
        "until": None,
        "on_time_tolerance_s": 60,
        "total": empty,
        "held_now": 0,
        "overdue_now": 0,
        "by_policy": {},
        "by_provider": {},
        "erasures": figures,
    }
    text = render_report(data, markdown=False)
    assert "COMPLETION_P50" in text and "2d" in text and "172800" not in text
    assert "| 1 | 1 | 0 | 0 | 2d | 2d | 2d |" in render_report(data, markdown=True)
    assert figures["completion_max_s"] == 172800
