"""Import rows: JSONL and CSV parsing, validation, and line numbers of rejects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.core.record_input import (
    csv_rows,
    from_mapping,
    jsonl_rows,
    parse_meta_args,
    validate_rows,
)
from retention.errors import InputError


def test_jsonl_rows_skip_blank_lines_and_keep_numbers() -> None:
    """Line numbers are the file's, blank lines included."""
    rows = list(jsonl_rows(['{"id": "a"}', "", '{"id": "b"}', "{oops"]))
    assert [n for n, _ in rows] == [1, 3, 4]
    assert isinstance(rows[-1][1], InputError)


def test_csv_rows_read_metadata_columns() -> None:
    """`metadata.KEY` columns and a JSON `metadata` column both become metadata."""
    rows = list(csv_rows(["id,metadata.data_class,metadata", 'a,pii,"{""team"": ""x""}"']))
    assert rows == [(2, {"id": "a", "metadata": {"data_class": "pii", "team": "x"}})]
    valid, rejects = validate_rows(rows)
    assert valid[0].metadata == {"data_class": "pii", "team": "x"} and not rejects


def test_csv_without_id_column_is_refused() -> None:
    """A CSV header must name `id`."""
    rows = list(csv_rows(["name\n", "a\n"]))
    assert isinstance(rows[0][1], InputError)


def test_validate_rows_reports_each_reject() -> None:
    """Rejects carry their line and reason; valid rows are kept in order."""
    rows = [
        (1, {"id": "a"}),
        (2, {"id": "b/c"}),
        (3, {"id": "d", "color": "red"}),
        (4, {"id": "e", "provider": "nope"}),
        (5, {"id": "f", "created_at": "x"}),
    ]
    valid, rejects = validate_rows(rows, providers={"fireworks"})
    assert [r.response_id for r in valid] == ["a"]
    assert [r.line for r in rejects] == [2, 3, 4, 5]
    assert "unknown field 'color'" in rejects[1].error


def test_from_mapping_reads_every_field() -> None:
    """A full item keeps created_at, model, metadata and the previous response."""
    record = from_mapping(
        {
            "id": "a",
            "provider": "fw",
            "created_at": 1795593600,
            "model": "m",
            "metadata": {"n": 3, "b": True},
            "previous_response_id": "z",
        }
    )
    assert record.created_at == datetime(2026, 11, 25, 8, tzinfo=UTC)
    assert record.metadata == {"n": "3", "b": "true"}
    assert record.previous_response_id == "z"


def test_meta_args() -> None:
    """`--meta k=v` pairs; a pair without `=` is a usage error."""
    assert parse_meta_args(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(InputError.__mro__[1]):
        parse_meta_args(["nope"])


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.none() | st.text(max_size=20) | st.integers() | st.lists(st.integers(), max_size=2),
        max_size=5,
    )
)
def test_arbitrary_objects_never_crash_validation(item: dict[str, object]) -> None:
    """Any JSON object is either a valid record or a clean reject."""
    valid, rejects = validate_rows([(1, item)])
    assert len(valid) + len(rejects) == 1
