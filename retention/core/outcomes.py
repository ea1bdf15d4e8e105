"""What a provider's answer to DELETE means, and how long to wait before asking again."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from retention.core.vocabulary import Outcome


def classify(status: int | None, *, refused: bool = False) -> Outcome:
    """Classify an HTTP status (None for a transport error). `refused`: the body of a 2xx said
    the object was not deleted, which is the provider's answer for this ID: failed, never
    deleted."""
    if status is None or status == 429 or status >= 500:
        return Outcome.RETRY
    if 200 <= status < 300:
        return Outcome.FAILED if refused else Outcome.DELETED
    if status == 404:
        return Outcome.ABSENT
    if status in (401, 403):
        return Outcome.AUTH
    return Outcome.FAILED


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), if usable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 0.5,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds before attempt `attempt + 1`.

    With Retry-After the provider said when to come back: that, plus up to 20% jitter so
    that requests told the same second do not return together (never earlier). Without it,
    jittered exponential backoff from `base`, capped at `cap`."""
    rng = rng or random.Random()
    if retry_after is not None:
        wait = min(retry_after, 3600.0)
        return wait + rng.uniform(0, 0.2 * max(wait, base))
    exp = min(cap, base * (2 ** max(0, attempt - 1)))
    return rng.uniform(exp / 2, exp)
