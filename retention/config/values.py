"""Parsers of single configuration values, shared by every settings module (a `Reader`
calls them and turns their ValueError into `file:line: key: ...`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retention.core.durations import parse_duration
from retention.core.quoting import quote


def one_of(*choices: str) -> Any:
    """A parser accepting one of `choices`."""

    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {quote(value)}")
        return str(value)

    return parse


def positive_duration(value: Any) -> timedelta:
    """A duration above zero."""
    result = parse_duration(value)
    if result <= timedelta(0):
        raise ValueError(f"expected a duration above 0, got {quote(value)}")
    return result
