"""Text the ledger can store and every output can print: valid Unicode, no stray controls.

Two rules. A *name* (a model, a provider, a metadata key) holds no control character at all:
C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F). *Free text* (a metadata value, a string in a
YAML file) may hold tab, newline and carriage return, and no other C0 control nor DEL. Neither
may hold a lone surrogate (U+D800-U+DFFF): it is not Unicode, cannot be encoded as UTF-8, and
would fail at the database or at the first `print`. NUL is refused everywhere (PostgreSQL
cannot store it in text).
"""

from __future__ import annotations

import re

_NAME_FLAWS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_FLAWS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def name_flaw(value: str) -> str | None:
    """Why `value` cannot be stored as a name (a phrase: "holds a control character, U+0000
    at character 3"), or None when it can."""
    return _described(_NAME_FLAWS.search(value))


def text_flaw(value: str) -> str | None:
    """Why `value` cannot be stored as free text, or None when it can."""
    return _described(_TEXT_FLAWS.search(value))


def _described(found: re.Match[str] | None) -> str | None:
    """The message for the first flawed character."""
    if found is None:
        return None
    char = found.group()
    where = f"U+{ord(char):04X} at character {found.start() + 1}"
    if "\ud800" <= char <= "\udfff":
        return f"is not valid Unicode: a lone surrogate, {where} (text must be UTF-8)"
    return f"holds a control character, {where}"


def printable(value: str) -> str:
    """`value` with lone surrogates shown as `\\udXXX` escapes, so that it can be printed (for
    rows stored before such text was refused at the door)."""
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def escaped(value: str, *, name: bool = True) -> str:
    """`value` made storable rather than refused (what a provider says is kept as well as it
    can be): each character a name (or, with `name` false, free text) may not hold is written
    as a `\\uXXXX` escape, so that what remains still reads, and still matches a glob on its
    prefix."""
    flaws = _NAME_FLAWS if name else _TEXT_FLAWS
    return flaws.sub(lambda found: f"\\u{ord(found.group()):04x}", value)
