"""Where a requeued failed record goes: pure, with `now` and the policies passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from retention.config.policyfile import parse_policies
from retention.services.requeue import requeue_columns
from tests.helpers import POLICIES

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RULES = parse_policies(POLICIES)


def failed_row(*, created: datetime, rid: str = "resp_1", **kw: object) -> SimpleNamespace:
    """A failed records row as the ledger returns it, under the default 30-day policy."""
    values = {
        "response_id": rid,
        "provider": "fireworks",
        "account": "acme",
        "created_at": created,
        "first_seen_at": created,
        "model": None,
        "meta": {},
        "previous_response_id": None,
        "chain_root": None,
        "object": "response",
        "last_activity_at": None,
        "policy": "default",
        "deadline": created + timedelta(days=30),
        "deadline_basis": "created_at",
        "attempts": 8,
        "last_status": 503,
        "last_error": "gave up after 8 attempts",
        "closed_at": NOW - timedelta(hours=1),
        **kw,
    }
    return SimpleNamespace(**values)


def test_a_long_overdue_id_is_due_now_with_nothing_left_of_its_failure() -> None:
    """Past its deadline: pending, due at `now`, attempts and last error cleared, not closed."""
    columns = requeue_columns(failed_row(created=NOW - timedelta(days=40)), RULES, NOW)
    assert (columns["state"], columns["due_at"], columns["attempts"]) == ("pending", NOW, 0)
    assert columns["last_error"] is columns["last_status"] is columns["closed_at"] is None
    assert columns["deadline"] == NOW - timedelta(days=10)


def test_never_due_before_its_deadline() -> None:
    """A recorded deadline still ahead (a chain's, later than the policy's) is the due time."""
    row = failed_row(created=NOW - timedelta(days=29), deadline=NOW + timedelta(days=3))
    assert requeue_columns(row, RULES, NOW)["due_at"] == NOW + timedelta(days=3)


def test_a_longer_ttl_in_force_now_moves_the_deadline() -> None:
    """Policies changed since the failure: the later of the two deadlines wins."""
    longer = parse_policies(POLICIES.replace("ttl: 30d", "ttl: 60d"))
    created = NOW - timedelta(days=40)
    columns = requeue_columns(failed_row(created=created), longer, NOW)
    assert columns["deadline"] == columns["due_at"] == created + timedelta(days=60)


def test_a_hold_placed_since_keeps_it() -> None:
    """An ID a hold now covers goes back as held, with no due time."""
    row = failed_row(created=NOW - timedelta(days=40), rid="resp_held")
    columns = requeue_columns(row, RULES, NOW)
    assert (columns["state"], columns["hold"], columns["due_at"]) == ("held", "case-2026-113", None)
