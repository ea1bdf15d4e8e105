"""Quoted values stay short, whatever they hold."""

from __future__ import annotations

from retention.core.quoting import LIMIT, quote


def test_a_shared_structure_is_not_expanded() -> None:
    """Nine levels of nine shared references (9**9 leaves when expanded) quote in a line."""
    value: object = ["lol"] * 9
    for _ in range(9):
        value = [value] * 9
    assert len(quote(value)) <= LIMIT


def test_subclasses_are_bounded_too() -> None:
    """A list or dict subclass (the YAML reader's) is quoted like its base, not by repr."""

    class Lines(list):  # type: ignore[type-arg]
        def __repr__(self) -> str:
            raise AssertionError("never called")

    assert quote(Lines([1, 2, 3, 4, 5])) == "[1, 2, 3, 4, ...]"


def test_long_strings_and_huge_integers_are_cut() -> None:
    """A megabyte string and a ten-thousand-digit integer quote within the limit."""
    assert len(quote("x" * 1_000_000)) <= LIMIT
    assert len(quote(10**10_000)) <= LIMIT
    assert quote("short") == "'short'" and quote(12) == "12" and quote(None) == "None"
