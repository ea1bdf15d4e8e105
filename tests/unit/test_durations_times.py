"""Durations and times as users write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.core.durations import format_age, format_duration, parse_duration
from retention.core.times import format_time, parse_time, require_aware
from retention.errors import InputError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("P7D", timedelta(days=7)),
        ("PT12H", timedelta(hours=12)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    """Every documented form parses to the right length."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["3 parsecs", "7", "-1d", "1y", "P1Y", "P", "PT", "1.5h", "", "d7", True, None, 3.5]
)
def test_bad_durations_fail_with_a_message(text: object) -> None:
    """Anything else is refused with a message saying what is accepted."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=3650 * 86400))
def test_format_duration_round_trips(seconds: int) -> None:
    """A formatted duration parses back to the same length."""
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_format_age_is_rounded() -> None:
    """Ages show the two largest units."""
    assert format_age(timedelta(days=54, hours=22, minutes=3)) == "54d 22h"
    assert format_age(timedelta(seconds=42)) == "42s"


@pytest.mark.parametrize(
    "value", ["2026-11-25T08:00:00Z", "2026-11-25T09:00:00+01:00", 1795593600, "1795593600"]
)
def test_times_parse_to_utc(value: object) -> None:
    """RFC 3339 with a zone, and unix seconds, give the same aware UTC moment."""
    assert parse_time(value) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2026-11-25T08:00:00", "tomorrow", "", True, None, -5, "1e30"])
def test_bad_times_are_input_errors(value: object) -> None:
    """Naive, unparseable or absurd times are refused."""
    with pytest.raises(InputError):
        parse_time(value, field="created_at")


def test_naive_datetimes_are_refused() -> None:
    """The core never takes a naive datetime."""
    with pytest.raises(ValueError, match="naive"):
        require_aware(datetime(2026, 1, 1))


def test_format_time_has_microseconds() -> None:
    """The audit trail's time format is RFC 3339 UTC with microseconds."""
    assert (
        format_time(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    )
