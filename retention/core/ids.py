"""Response IDs: the only way a string becomes a URL path segment."""

from __future__ import annotations

import re

from retention.core.quoting import quote
from retention.errors import InvalidIdError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


def validate_id(value: object) -> str:
    """Return `value` when it is a safe response ID, else raise InvalidIdError naming it."""
    if not isinstance(value, str):
        raise InvalidIdError(f"response ID must be a string, got {type(value).__name__}")
    if ID_PATTERN.fullmatch(value) is None:
        raise InvalidIdError(
            f"invalid response ID {quote(value)}: must match ^[A-Za-z0-9][A-Za-z0-9_.:-]{{0,199}}$"
        )
    return value


def is_valid_id(value: object) -> bool:
    """Whether `value` is a safe response ID."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
