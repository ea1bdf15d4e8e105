"""Times: always aware UTC inside; RFC 3339 or unix seconds at the edges."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from retention.core.quoting import quote
from retention.errors import InputError

_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_MAX = datetime(2200, 1, 1, tzinfo=UTC)
_FORMS = "RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25, midnight UTC) or unix seconds"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# how far ahead of our clock a creation time may be: clocks disagree by seconds, not by more
FUTURE_SKEW = timedelta(minutes=5)


def require_aware(moment: datetime) -> datetime:
    """Return `moment` in UTC; a naive datetime is a programming error."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: retention only works with aware UTC datetimes")
    return moment.astimezone(UTC)


def parse_time(value: object, *, field: str = "time") -> datetime:
    """Parse RFC 3339 (`2026-11-25T08:00:00Z`), a date (`2026-11-25`: midnight UTC) or unix
    seconds into an aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        raise InputError(f"{field}: expected {_FORMS}, got {quote(value)}")
    try:
        moment = _parse(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise InputError(f"{field}: expected {_FORMS}, got {quote(value)}") from exc
    if not _MIN <= moment < _MAX:
        raise InputError(f"{field}: {quote(value)} is outside 2000..2200")
    return moment


def refuse_future(moment: datetime, now: datetime, *, field: str = "created_at") -> datetime:
    """Return `moment` unless it is later than `now` plus FUTURE_SKEW: a response cannot have
    been created in the future, and a deadline counted from such a time would be too late."""
    if moment > require_aware(now) + FUTURE_SKEW:
        raise InputError(
            f"{field}: {format_time(moment)} is in the future (now is {format_time(now)}; "
            f"at most {int(FUTURE_SKEW.total_seconds() // 60)} minutes of clock skew allowed)"
        )
    return moment


def _parse(value: object) -> datetime:
    """Parse without range checks."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(value)
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return datetime.fromtimestamp(float(text), tz=UTC)
    if _DATE.fullmatch(text):  # a calendar day means its first moment in UTC
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        raise ValueError("a time needs a zone: add Z or an offset")
    return moment.astimezone(UTC)


def format_time(moment: datetime | None) -> str | None:
    """RFC 3339 UTC with microseconds, as the audit trail writes times."""
    if moment is None:
        return None
    return _rfc3339(require_aware(moment))


@lru_cache(maxsize=4096)
def _rfc3339(moment: datetime) -> str:
    """The text of a UTC datetime (memoised: one write repeats a few times many times)."""
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" written as Z


def utcnow() -> datetime:
    """The current time; only the edges call this, the core takes `now` as a parameter."""
    return datetime.now(UTC)
