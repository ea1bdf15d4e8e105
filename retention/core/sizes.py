"""Sizes as operators write them: `100MiB`, `1GiB`, `500MB`, `64KiB`, `4096B`."""

from __future__ import annotations

import re

from retention.core.quoting import quote

_SIZE = re.compile(r"(\d{1,15})\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)")
_FACTORS = {
    "B": 1,
    "KB": 10**3,
    "KiB": 2**10,
    "MB": 10**6,
    "MiB": 2**20,
    "GB": 10**9,
    "GiB": 2**30,
    "TB": 10**12,
    "TiB": 2**40,
}
MAX_SIZE = 2**50  # a petabyte: anything larger is a typo


def parse_size(text: object) -> int:
    """Bytes in a size with its unit, raising ValueError with a message fit for
    `file:line: key: ...`. A bare number is refused: `100` could mean bytes or megabytes."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"expected a size like 100MiB, 1GiB or 500MB, got {quote(text)}")
    value = str(text).strip()
    match = _SIZE.fullmatch(value)
    if match is None:
        hint = f" (say {value}B for bytes)" if value.isdigit() else ""
        raise ValueError(
            f"expected a size like 100MiB, 1GiB or 500MB (units B, KB, KiB, MB, MiB, GB, GiB, "
            f"TB, TiB), got {quote(value)}{hint}"
        )
    size = int(match.group(1)) * _FACTORS[match.group(2)]
    if size > MAX_SIZE:
        raise ValueError(f"size {quote(value)} is larger than a petabyte")
    return size


def format_size(size: int) -> str:
    """A byte count the way `parse_size` reads it back: the largest binary unit that divides
    it (`104857600` -> `100MiB`), else bytes."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % _FACTORS[unit] == 0:
            return f"{size // _FACTORS[unit]}{unit}"
    return f"{size}B"
