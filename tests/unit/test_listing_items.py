"""A provider's listing item is tracked whatever it holds: its text escaped, never refused."""

from __future__ import annotations

from datetime import UTC, datetime

from retention.discover import to_record

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_text_the_ledger_cannot_store_is_escaped_not_refused() -> None:
    """Controls, NUL and lone surrogates in the model and metadata are escaped; the model's
    prefix still reads, so a policy glob like `gpt-4*` still matches it."""
    item = {
        "id": "resp_odd",
        "model": "gpt-4\x01o",
        "metadata": {"k\x00": "v\ud800", "tags": ["a", "b"], "ok": True},
    }
    record = to_record(item, "fw", NOW)
    assert record is not None and record.response_id == "resp_odd"
    assert record.model == "gpt-4\\u0001o"
    assert record.metadata == {"k\\u0000": "v\\ud800", "tags": '["a", "b"]', "ok": "true"}


def test_a_creation_time_that_is_no_time_is_left_out() -> None:
    """A malformed or future creation time: the response is tracked from when it was seen."""
    for created in ("yesterday-ish", 1e400, "2199-01-01T00:00:00Z", [1]):
        record = to_record({"id": "resp_when", "created_at": created}, "fw", NOW)
        assert record is not None and record.created_at is None, created


def test_oversized_text_is_cut_to_size() -> None:
    """A 10,000-character model and 100 metadata keys fit the ledger's limits."""
    item = {"id": "resp_big", "model": "m" * 10_000, "metadata": {f"k{i}": "v" for i in range(100)}}
    record = to_record(item, "fw", NOW)
    assert record is not None and len(record.model or "") == 256 and len(record.metadata) == 64
