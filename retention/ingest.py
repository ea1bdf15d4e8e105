"""Turn what users hand us (CLI arguments, JSONL, CSV, JSON bodies) into validated records.

IDs are validated before anything else happens to a row. Pure: callers do the reading.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from retention.core.ids import validate_id
from retention.core.times import parse_time
from retention.errors import InputError, UsageError

csv.field_size_limit(1 << 24)  # 16 MiB: a long cell is an error we report, not a crash
FIELDS = ("id", "provider", "created_at", "model", "metadata", "previous_response_id")
_KNOWN = frozenset(FIELDS)
MAX_META = 64


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A response ID to track, with what we know about it."""

    response_id: str
    provider: str | None = None
    created_at: datetime | None = None
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An input row that could not be used, and why."""

    line: int
    error: str


def from_mapping(item: Any) -> NewRecord:
    """Validate one record given as a mapping (a JSONL line, an ingest item)."""
    if not isinstance(item, dict):
        raise InputError(f"expected an object, got {type(item).__name__}")
    if not item.keys() <= _KNOWN:
        unknown = sorted(set(item) - _KNOWN)
        raise InputError(f"unknown field {unknown[0]!r}; expected: {', '.join(FIELDS)}")
    if "id" not in item:
        raise InputError("id: required")
    response_id = validate_id(item["id"])
    previous = item.get("previous_response_id")
    return NewRecord(
        response_id=response_id,
        provider=_optional_str(item, "provider"),
        created_at=(
            parse_time(item["created_at"], field="created_at")
            if item.get("created_at") not in (None, "")
            else None
        ),
        model=_optional_str(item, "model"),
        metadata=metadata_of(item.get("metadata")),
        previous_response_id=validate_id(previous) if previous else None,
    )


def _optional_str(item: dict[str, Any], key: str) -> str | None:
    """A string field that may be absent."""
    value = item.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise InputError(f"{key}: expected a string of at most 256 characters, got {value!r}")
    return value


def metadata_of(value: Any) -> dict[str, str]:
    """Validate metadata: string keys, scalar values kept as strings."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise InputError(f"metadata: expected an object, got {type(value).__name__}")
    if len(value) > MAX_META:
        raise InputError(f"metadata: at most {MAX_META} keys")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise InputError(f"metadata: invalid key {key!r}")
        if isinstance(item, dict | list) or item is None or len(str(item)) > 512:
            raise InputError(f"metadata.{key}: expected a string, got {item!r}")
        result[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return result


def parse_meta_args(pairs: Iterable[str]) -> dict[str, str]:
    """`--meta k=v` arguments as metadata."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta expects key=value, got {pair!r}")
        result[key] = value
    return metadata_of(result)


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or InputError) for each non-blank JSONL line."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as exc:
            yield number, InputError(f"invalid JSON: {getattr(exc, 'msg', exc)}")
        except RecursionError:
            yield number, InputError("invalid JSON: nested too deeply")


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
                meta.update(json.loads(value))
            except (ValueError, TypeError, AttributeError):
                raise InputError("metadata: expected a JSON object") from None
        elif value not in (None, ""):
            item[key] = value
    if meta:
        item["metadata"] = meta
    return item


def validate_rows(
    rows: Iterable[tuple[int, Any]], *, providers: set[str] | None = None
) -> tuple[list[NewRecord], list[Reject]]:
    """Split parsed rows into valid records and rejects with their line numbers."""
    rejects: list[Reject] = []
    return list(valid_records(rows, rejects.append, providers=providers)), rejects


def valid_records(
    rows: Iterable[tuple[int, Any]],
    reject: Callable[[Reject], None],
    *,
    providers: set[str] | None = None,
    after_reject: bool = True,
) -> Iterator[NewRecord]:
    """The valid records among parsed rows, as they come; each reject goes to `reject`.
    With `after_reject` false, nothing more is yielded once a row was rejected (the rest are
    still checked, so every reject is counted)."""
    rejected = False
    for line, item in rows:
        try:
            if isinstance(item, InputError):
                raise item
            record = from_mapping(item)
            if providers is not None and record.provider not in (None, *providers):
                raise InputError(f"provider: unknown provider {record.provider!r}")
        except UsageError as exc:
            reject(Reject(line, exc.message))
            rejected = True
            continue
        if after_reject or not rejected:
            yield record
