"""What provider answers mean, and how long to wait before asking again."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from retention.core.outcomes import Outcome, backoff, classify, parse_retry_after


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELETED),
        (204, Outcome.DELETED),
        (404, Outcome.ABSENT),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (None, Outcome.RETRY),
        (401, Outcome.AUTH),
        (403, Outcome.AUTH),
        (400, Outcome.FAILED),
        (409, Outcome.FAILED),
        (422, Outcome.FAILED),
        (301, Outcome.FAILED),
    ],
)
def test_status_classification(status: int | None, outcome: Outcome) -> None:
    """Each status means exactly what docs/evidence.md and the README say."""
    assert classify(status) is outcome


def test_retry_after_seconds_and_dates() -> None:
    """Retry-After is read as seconds or as an HTTP date."""
    now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after("Wed, 25 Nov 2026 08:00:10 GMT", now) == 10.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_grows_and_honours_retry_after() -> None:
    """Waits grow with attempts, stay jittered and capped, and never undercut Retry-After."""
    rng = random.Random(1)
    waits = [backoff(n, rng=rng) for n in range(1, 8)]
    assert all(w >= 0.25 for w in waits) and waits[-1] > waits[0]
    assert all(7 <= backoff(n, retry_after=7, rng=rng) <= 8.4 for n in range(1, 10))
    assert backoff(30, rng=rng) <= 30


def test_a_2xx_whose_body_says_not_deleted_fails() -> None:
    """`{"deleted": false}` under a 200 is the provider's refusal: failed, never deleted."""
    assert classify(200, refused=True) is Outcome.FAILED
    assert classify(200) is Outcome.DELETED
