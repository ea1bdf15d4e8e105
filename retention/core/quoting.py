"""Values quoted in error messages and events, bounded whatever the input holds.

`repr()` of YAML input is unbounded: aliases make a 400-byte file a structure whose text is
gigabytes (an alias bomb), and an error message or a `policy.rejected` event that quotes it
would be too. `quote` shows a few items of a few levels and a short string, never more than
`LIMIT` characters, and its cost does not depend on the value's size.
"""

from __future__ import annotations

from typing import Any

LIMIT = 120  # characters of any one quoted value
ITEMS = 4  # items shown of a list or mapping
DEPTH = 2  # levels shown of nested lists and mappings


def quote(value: Any) -> str:
    """A short, bounded repr of `value` for an error message."""
    text = _shown(value, DEPTH)
    return text if len(text) <= LIMIT else text[: LIMIT - 3] + "..."


def _shown(value: Any, depth: int) -> str:
    """`value`'s repr with at most ITEMS items of DEPTH levels (subclasses included, as the
    YAML reader's line-numbered containers are)."""
    if isinstance(value, dict):
        if depth == 0:
            return "{...}"
        items = [f"{_shown(k, 0)}: {_shown(v, depth - 1)}" for k, v in _first(value.items())]
        return "{" + ", ".join(items) + (", ..." if len(value) > ITEMS else "") + "}"
    if isinstance(value, list | tuple | set | frozenset):
        if depth == 0:
            return "[...]"
        items = [_shown(v, depth - 1) for v in _first(value)]
        return "[" + ", ".join(items) + (", ..." if len(value) > ITEMS else "") + "]"
    if isinstance(value, str):
        return repr(value[:LIMIT] + ("..." if len(value) > LIMIT else ""))
    if isinstance(value, bool | float | type(None)):
        return repr(value)
    if isinstance(value, int):
        digits = str(value) if value.bit_length() < 400 else "a very large integer"
        return digits[:LIMIT]
    return f"<{type(value).__name__}>" if not hasattr(value, "isoformat") else repr(value)


def _first(items: Any) -> list[Any]:
    """The first ITEMS of an iterable."""
    out: list[Any] = []
    for item in items:
        if len(out) == ITEMS:
            break
        out.append(item)
    return out
