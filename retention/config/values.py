"""Parsers of single configuration values, shared by every settings module (a `Reader`
calls them and turns their ValueError into `file:line: key: ...`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

from retention.core.durations import parse_duration
from retention.core.loopback import is_loopback
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


def web_url(value: Any) -> SplitResult:
    """The parts of an http(s) URL with a host; what else it may hold is the caller's rule."""
    if not isinstance(value, str):
        raise ValueError(f"expected a URL, got {quote(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"expected an https:// URL, got {quote(value)}")
    return parts


def https_or_loopback(parts: SplitResult, why: str) -> None:
    """Refuse plain http to anything but a loopback address, saying `why`."""
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ValueError(f"http:// is allowed only to loopback; {why}")
