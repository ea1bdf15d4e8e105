"""Read exported or live trails back: JSONL or CSV records, manifests, keys, checkpoints."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from retention.audit.hashchain import canonical
from retention.core.vocabulary import Event
from retention.errors import InputError

csv.field_size_limit(sys.maxsize)


# the CSV export's columns; the last holds the exact record, the others show parts of it
CSV_COLUMNS = (
    "chain",
    "seq",
    "ts",
    "event",
    "response_id",
    "provider",
    "policy",
    "http_status",
    "hash",
    "record",
)
TRANSITION = "next_key_fingerprint"  # only a key hand-over's line holds this


def iter_records(path: Path, *, canonical_only: bool = True) -> Iterator[Any]:
    """The records of a trail file, read as they are needed (a trail may be gigabytes). A line
    that is not the canonical JSON of a record (unless `canonical_only` is off), or a CSV row
    whose columns say something else than its record, is yielded as None: a fault."""
    parse = _canonical_or_none if canonical_only else _json_or_none
    with _open(path) as handle:
        try:
            if path.suffix.lower() == ".csv":
                yield from _csv_records(handle)
                return
            for line in handle:
                if line.strip():
                    yield parse(line.rstrip("\r\n"))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None


def _open(path: Path) -> TextIO:
    """The file, opened for reading, or an InputError naming it."""
    try:
        return open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None


def _csv_records(handle: TextIO) -> Iterator[Any]:
    """The records of a CSV export whose header and visible columns match its records."""
    reader = csv.reader(handle)
    if tuple(next(reader, ())) != CSV_COLUMNS:
        yield None
        return
    for row in reader:
        record = _canonical_or_none(row[-1]) if len(row) == len(CSV_COLUMNS) else None
        shown = [
            "" if not isinstance(record, dict) or record.get(c) is None else str(record.get(c))
            for c in CSV_COLUMNS[:-1]
        ]
        yield record if record is not None and shown == row[:-1] else None


def _canonical_or_none(text: str) -> Any:
    """The record a line holds when the line is its canonical JSON (so what a reader of the
    line sees is what the hash covers: no duplicate keys, no other spelling), else None."""
    record = _json_or_none(text)
    try:
        return record if canonical(record) == text else None
    except (TypeError, ValueError, RecursionError):
        return None


def transitions_in(path: Path) -> list[dict[str, Any]]:
    """The key hand-over checkpoints of a trail file, found without parsing every line."""
    found = []
    with _open(path) as handle:
        for line in handle:
            if TRANSITION not in line:
                continue
            text = line.rstrip("\r\n")
            if path.suffix.lower() == ".csv":
                text = next(csv.reader([text]), [""])[-1]
            record = _json_or_none(text)
            if isinstance(record, dict):
                found.append(record)
    return found


def locator(path: Path) -> Callable[[str, int], bool]:
    """Whether a (chain, seq) occurs anywhere in the file: read again only when a seq is out
    of place, to tell a reordered trail from one with a record missing."""

    def located(chain: str, seq: int) -> bool:
        return any(
            isinstance(r, dict) and r.get("chain") == chain and r.get("seq") == seq
            for r in iter_records(path)
        )

    return located


def _json_or_none(text: str) -> Any:
    """Parsed JSON, or None."""
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return None


def manifest_path(path: Path) -> Path:
    """Where the manifest of an export at `path` lives."""
    return path.with_name(path.name + ".manifest.json")


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest beside an export, if there is one."""
    target = manifest_path(path)
    if not target.exists():
        return None
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{target}: not a manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{target}: not a manifest")
    return manifest


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoints(path: Path) -> list[dict[str, Any]]:
    """Checkpoint records kept by an auditor or a witness: a file of JSON lines, or a folder
    of them (a `dir` witness keeps `CHAIN.checkpoints.jsonl` files)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    records = [r for f in files for r in iter_records(f, canonical_only=False)]
    if not records or not all(
        isinstance(r, dict) and r.get("event") == Event.AUDIT_CHECKPOINT for r in records
    ):
        raise InputError(f"{path}: not a file (or folder) of audit.checkpoint records")
    return records
