"""Known secrets, kept out of every text: logs, events, errors, the ledger, exports.

Each secret this process reads (API keys, the ingest token, witness tokens) is registered once.
`redact` replaces it in any text, in every form it takes once quoted: raw, escaped by JSON
(`"` and `\\` escaped, non-ASCII as `\\uXXXX` or not), by Python's repr (either quote), by
HTML or percent-encoded in a URL, and each of those quoted once more (a JSON line or a repr
holding an escaped value); and the head of one that someone else cut (`sk-proj-abc...`, at the
end of a text), at least `PARTIAL` characters of it. `scrub` is the one gate for values a
provider sends us (headers, error bodies): control characters out, then secrets, then a
length cap; `redact_tree` for decoded JSON (a listing) removes invisible characters from a
string only where they split a secret.
"""

from __future__ import annotations

import html
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_LENGTH = 4  # shorter values would redact ordinary words; no real key is this short
PARTIAL = 12  # characters of a secret's head, cut short by someone else, that are redacted
_CUT_MARKS = ("...", "\u2026")  # how the texts we are given show that they were cut

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_forms: tuple[str, ...] = ()  # every form of every secret, longest first (replaced atomically)

# removed from provider values, not replaced, so that a secret split by one is whole again and
# caught: C0 and C1 controls, DEL, lone surrogates, zero-width and bidirectional marks, BOM
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"
)


def register_secret(value: str | None) -> None:
    """Never let `value` reach a log line, an event, an error or a file, in any form."""
    global _secrets, _forms
    if not value or len(value) < MIN_LENGTH or value in _secrets:
        return
    with _lock:
        _secrets = _secrets | {value}
        _forms = tuple(sorted({f for s in _secrets for f in forms_of(s)}, key=len, reverse=True))


def forms_of(secret: str) -> set[str]:
    """`secret` as it reads once quoted by JSON, repr or HTML, and once more (a JSON line or a
    repr holding an escaped value)."""
    return {twice for once in _quoted(secret) for twice in _quoted(once)}


def _quoted(text: str) -> set[str]:
    """`text` and what is between the quotes when JSON, repr or HTML quote it."""
    return {
        text,
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text)[1:-1],
        repr(text + "'\"")[1:-4],  # inside a text holding both quotes: ' escaped too
        html.escape(text),
        quote(text, safe=""),  # in a URL: a redirect's Location, a cursor, a debug link
        quote_plus(text, safe=""),
    }


def redact(text: str) -> str:
    """`text` with every form of every registered secret replaced by `[redacted]`, and the
    head of one cut short (followed by `...` or the end of the text)."""
    for form in _forms:
        if form in text:
            text = text.replace(form, REDACTED)
    for form in _forms:
        if len(form) > PARTIAL and form[:PARTIAL] in text:
            text = _redact_cut(text, form)
    return text


def _redact_cut(text: str, form: str) -> str:
    """`text` with each head of `form` (PARTIAL characters or more) that ends where the text
    was cut replaced by `[redacted]`."""
    start = text.find(form[:PARTIAL])
    while start != -1:
        end = start + PARTIAL
        while end < len(text) and end - start < len(form) and text[end] == form[end - start]:
            end += 1
        if end == len(text) or text.startswith(_CUT_MARKS, end):
            text = text[:start] + REDACTED + text[end:]
            end = start + len(REDACTED)
        start = text.find(form[:PARTIAL], end)
    return text


def redact_tree(value: Any) -> Any:
    """A decoded JSON value with every string (keys too) redacted."""
    if not _forms:
        return value
    if isinstance(value, str):
        return _redact_string(value)
    if isinstance(value, list):
        return [redact_tree(item) for item in value]
    if isinstance(value, dict):
        return {redact_tree(k): redact_tree(v) for k, v in value.items()}
    return value


def _redact_string(text: str) -> str:
    """`text` redacted; where removing invisible characters reveals a secret (a key split by a
    zero-width space or a tab), redacted without them."""
    text = redact(text)
    bare = _UNSAFE.sub("", text)
    if bare != text:
        caught = redact(bare)
        if caught != bare:
            return caught
    return text


def scrub(text: str | None, limit: int) -> str | None:
    """A value from a provider made safe to store, log and show: control and invisible
    characters removed, secrets redacted, then cut to `limit` characters."""
    if text is None:
        return None
    text = redact(_UNSAFE.sub("", text))
    return text if len(text) <= limit else text[: limit - 3] + "..."
