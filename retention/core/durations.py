"""Durations as operators write them: `90s`, `15m`, `24h`, `7d`, `2w`, or ISO 8601 `P7D`."""

from __future__ import annotations

import re
from datetime import timedelta

from retention.core.quoting import quote

_SHORT = re.compile(r"(\d{1,9})\s*(s|m|h|d|w)")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ISO = re.compile(
    r"P(?:(?P<weeks>\d{1,9})W)?(?:(?P<days>\d{1,9})D)?"
    r"(?:T(?:(?P<hours>\d{1,9})H)?(?:(?P<minutes>\d{1,9})M)?(?:(?P<seconds>\d{1,9})S)?)?"
)
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: object) -> timedelta:
    """Parse a duration, raising ValueError with a message fit for `file:line: key: ...`."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(
            f"expected a duration like 90s, 15m, 24h, 7d, 2w or P7D, got {quote(text)}"
        )
    value = str(text).strip()
    if value == "0":
        return timedelta(0)
    short = _SHORT.fullmatch(value)
    try:
        if short:
            result = timedelta(**{_UNITS[short.group(2)]: int(short.group(1))})
        else:
            result = _parse_iso(value)
    except OverflowError:
        raise ValueError(f"duration {quote(value)} is longer than ten years") from None
    if result > MAX_DURATION:
        raise ValueError(f"duration {quote(value)} is longer than ten years")
    return result


def _parse_iso(value: str) -> timedelta:
    """Parse the ISO 8601 durations that have a fixed length (no years or months)."""
    iso = _ISO.fullmatch(value.upper())
    if iso is None or value.upper() in ("P", "PT") or value.upper().endswith("T"):
        raise ValueError(
            f"invalid duration {quote(value)}: use a number and a unit (90s, 15m, 24h, 7d, 2w) "
            "or ISO 8601 (P7D, PT12H)"
        )
    return timedelta(**{k: int(v) for k, v in iso.groupdict().items() if v})


def format_duration(delta: timedelta) -> str:
    """The shortest exact short form of `delta` (`7d`, `90s`)."""
    seconds = int(delta.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_age(delta: timedelta) -> str:
    """A rounded human length of time: `54d 22h`, `3h 5m`, `42s`."""
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + " ".join(parts[:2])
