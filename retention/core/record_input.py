"""Turn what users hand us (CLI arguments, JSONL, CSV, JSON bodies) into validated records.

IDs are validated before anything else happens to a row. Only what the ledger can store and
every output can print gets through (core/text.py): no lone surrogates, no NUL or stray control
characters, no NaN or infinite numbers, no creation time in the future. Pure: callers do the
reading and pass the time.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from retention.core.ids import validate_id
from retention.core.quoting import quote
from retention.core.text import name_flaw, text_flaw
from retention.core.times import parse_time, refuse_future
from retention.core.vocabulary import OBJECT_KINDS, ObjectKind
from retention.errors import InputError, UsageError

csv.field_size_limit(1 << 24)  # 16 MiB: a long cell is an error we report, not a crash
FIELDS = (
    "id",
    "object",
    "provider",
    "created_at",
    "model",
    "metadata",
    "previous_response_id",
    "conversation",
)
_KNOWN = frozenset(FIELDS)
MAX_META = 64  # keys
MAX_NAME = 256  # characters of a model or provider name
MAX_KEY = 64  # characters of a metadata key
MAX_VALUE = 512  # characters of a metadata value
MAX_INT = 2**63 - 1  # a number as a metadata value: what a 64-bit integer holds


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A response ID to track, with what we know about it."""

    response_id: str
    provider: str | None = None
    created_at: datetime | None = None
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    object: str = ObjectKind.RESPONSE  # what the ID names: a response or a conversation
    conversation: str | None = None  # a response's conversation: the turn moves its activity


@dataclass(frozen=True, slots=True)
class Reject:
    """An input row that could not be used, and why."""

    line: int
    error: str


def from_mapping(item: Any, *, now: datetime | None = None) -> NewRecord:
    """Validate one record given as a mapping (a JSONL line, an ingest item); with `now`, a
    `created_at` later than `now` (plus a little clock skew) is refused."""
    if not isinstance(item, dict):
        raise InputError(f"expected an object, got {type(item).__name__}")
    if not item.keys() <= _KNOWN:
        unknown = sorted(set(item) - _KNOWN)
        raise InputError(f"unknown field {quote(unknown[0])}; expected: {', '.join(FIELDS)}")
    if "id" not in item:
        raise InputError("id: required")
    response_id = validate_id(item["id"])
    previous = item.get("previous_response_id")
    created = item.get("created_at")
    created_at = parse_time(created, field="created_at") if created not in (None, "") else None
    if created_at is not None and now is not None:
        refuse_future(created_at, now, field="created_at")
    kind = object_of(item.get("object"))
    conversation = item.get("conversation")
    if conversation not in (None, "") and kind != ObjectKind.RESPONSE:
        raise InputError("conversation: only a response is made in a conversation")
    return NewRecord(
        response_id=response_id,
        object=kind,
        conversation=validate_id(conversation) if conversation not in (None, "") else None,
        provider=_optional_str(item, "provider"),
        created_at=created_at,
        model=_optional_str(item, "model"),
        metadata=metadata_of(item.get("metadata")),
        previous_response_id=validate_id(previous) if previous not in (None, "") else None,
    )


def object_of(value: Any) -> str:
    """What a record's ID names: `response` when not given."""
    if value in (None, ""):
        return ObjectKind.RESPONSE
    flaw = object_flaw(value)
    if flaw is not None:
        raise InputError(f"object: {flaw}")
    return str(value)


def object_flaw(value: Any) -> str | None:
    """What is wrong with `value` as an object kind (records, matches), or None."""
    if value in OBJECT_KINDS:
        return None
    return f"expected one of {', '.join(OBJECT_KINDS)}, got {quote(value)}"


def _optional_str(item: dict[str, Any], key: str) -> str | None:
    """A name field that may be absent."""
    value = item.get(key)
    return None if value in (None, "") else checked_name(value, key)


def checked_name(value: Any, field: str) -> str:
    """`value` when it is a name the ledger can store (a model, a provider), else InputError
    naming `field`."""
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise InputError(
            f"{field}: expected a string of at most {MAX_NAME} characters, got {quote(value)}"
        )
    flaw = name_flaw(value)
    if flaw is not None:
        raise InputError(f"{field}: {quote(value)} {flaw}")
    return value


def metadata_of(value: Any, *, label: str = "metadata") -> dict[str, str]:
    """Validate metadata: name-like keys, scalar values kept as strings (`label` names it in
    errors: `metadata` for records, `--meta` on the command line)."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{label}: expected an object, got {type(value).__name__}")
    if len(value) > MAX_META:
        raise InputError(f"{label}: at most {MAX_META} keys")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY:
            raise InputError(
                f"{label}: invalid key {quote(key)}: expected 1 to {MAX_KEY} characters"
            )
        flaw = name_flaw(key)
        if flaw is not None:
            raise InputError(f"{label}: key {quote(key)} {flaw}")
        result[key] = _meta_value(item, f"{label}.{key}")
    return result


def _meta_value(item: Any, field: str) -> str:
    """One metadata value as the string stored: text, a finite number of sane size, or
    true/false."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        if abs(item) > MAX_INT:
            raise InputError(
                f"{field}: {quote(item)} is too large a number (at most {MAX_INT} either way; "
                "send it as a string)"
            )
        return str(item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise InputError(f"{field}: {quote(item)} is not a finite number")
        return repr(item)
    if not isinstance(item, str) or len(item) > MAX_VALUE:
        raise InputError(
            f"{field}: expected a string of at most {MAX_VALUE} characters, a number or "
            f"true/false, got {quote(item)}"
        )
    flaw = text_flaw(item)
    if flaw is not None:
        raise InputError(f"{field}: {quote(item)} {flaw}")
    return item


def parse_meta_args(pairs: Iterable[str]) -> dict[str, str]:
    """`--meta k=v` arguments as metadata."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta expects key=value, got {quote(pair)}")
        result[key] = value
    return metadata_of(result, label="--meta")


def loads(text: str | bytes) -> Any:
    """`json.loads` that refuses what JSON does not have (NaN, Infinity) and numbers no float
    holds (1e400, which Python would read as infinity): ValueError naming it."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


def _no_constant(name: str) -> Any:
    """Refuse NaN, Infinity and -Infinity (Python's extension of JSON)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number with a fraction or exponent, refused unless a float holds it."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {quote(text)} is too large")
    return value


def json_error(exc: Exception) -> str:
    """What went wrong in `loads`, in one short line."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(getattr(exc, "msg", None) or exc)[:200]


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or InputError) for each non-blank JSONL line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, InputError(f"invalid JSON: {json_error(exc)}")


def csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, mapping or InputError) for each CSV row after the header.

    Columns: id, provider, created_at, model, previous_response_id, metadata (a JSON object)
    and any number of `metadata.KEY` columns.
    """
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        header = None
        yield 1, InputError(f"invalid CSV: {exc}")
        return
    if header is None or "id" not in header:
        yield 1, InputError("the CSV header must name an `id` column")
        return
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a stray quote swallowing the rest of the file
            yield reader.line_num, InputError(f"invalid CSV: {exc}")
            return
        try:
            yield reader.line_num, _csv_item(row)
        except InputError as exc:
            yield reader.line_num, exc


def _csv_item(row: dict[str, Any]) -> dict[str, Any]:
    """One CSV row as the mapping `from_mapping` reads."""
    if None in row:
        raise InputError("more cells than header columns")
    item: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key.startswith("metadata."):
            if value:
                meta[key[len("metadata.") :]] = value
        elif key == "metadata" and value:
            try:
                parsed = loads(value)
            except (ValueError, RecursionError) as exc:
                raise InputError(f"metadata: invalid JSON: {json_error(exc)}") from None
            if not isinstance(parsed, dict):
                raise InputError("metadata: expected a JSON object")
            meta.update(parsed)
        elif value not in (None, ""):
            item[key] = value
    if meta:
        item["metadata"] = meta
    return item


def validate_rows(
    rows: Iterable[tuple[int, Any]],
    *,
    providers: set[str] | None = None,
    now: datetime | None = None,
) -> tuple[list[NewRecord], list[Reject]]:
    """Split parsed rows into valid records and rejects with their line numbers."""
    rejects: list[Reject] = []
    return list(valid_records(rows, rejects.append, providers=providers, now=now)), rejects


def valid_records(
    rows: Iterable[tuple[int, Any]],
    reject: Callable[[Reject], None],
    *,
    providers: set[str] | None = None,
    after_reject: bool = True,
    now: datetime | None = None,
) -> Iterator[NewRecord]:
    """The valid records among parsed rows, as they come; each reject goes to `reject`.
    With `after_reject` false, nothing more is yielded once a row was rejected (the rest are
    still checked, so every reject is counted). With `now`, creation times are checked
    against it."""
    rejected = False
    for line, item in rows:
        try:
            if isinstance(item, InputError):
                raise item
            record = from_mapping(item, now=now)
            if providers is not None and record.provider not in (None, *providers):
                raise InputError(f"provider: unknown provider {quote(record.provider)}")
        except UsageError as exc:
            reject(Reject(line, exc.message))
            rejected = True
            continue
        if after_reject or not rejected:
            yield record
