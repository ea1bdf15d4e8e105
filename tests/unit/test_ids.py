"""Response IDs: only safe single path segments pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.core.ids import ID_PATTERN, is_valid_id, validate_id
from retention.errors import InvalidIdError

SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-")


@pytest.mark.parametrize("good", ["resp_abc123", "a", "R1.2:3-4_5", "a..b", "x" * 200])
def test_valid_ids_pass(good: str) -> None:
    """IDs made of the allowed characters, starting alphanumeric, pass unchanged."""
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/b",
        "r?x=1",
        "r 1",
        "résumé",
        "%2e%2e",
        "",
        ".",
        "..",
        "-x",
        "_x",
        "a\n",
        "a\x00",
        "a#b",
        "a\\b",
        "x" * 201,
        "ｒｅｓｐ",
    ],
)
def test_hostile_ids_are_refused(bad: str) -> None:
    """Separators, dots first, encodings, spaces, control and non-ASCII characters fail."""
    with pytest.raises(InvalidIdError, match="invalid response ID"):
        validate_id(bad)


@pytest.mark.parametrize("value", [None, 12, b"resp", ["resp"]])
def test_non_strings_are_refused(value: object) -> None:
    """Only strings can be IDs."""
    with pytest.raises(InvalidIdError):
        validate_id(value)


@given(st.text(max_size=220))
def test_anything_accepted_is_a_safe_segment(value: str) -> None:
    """Whatever passes holds only safe ASCII characters and no traversal."""
    if is_valid_id(value):
        assert set(value) <= SAFE
        assert value not in (".", "..") and value[0].isalnum() and len(value) <= 200
        assert ID_PATTERN.fullmatch(value)
