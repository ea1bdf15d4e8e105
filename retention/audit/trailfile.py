"""Read exported or live trails back: JSONL or CSV records, manifests, keys, checkpoints."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from retention.errors import InputError

csv.field_size_limit(sys.maxsize)


def read_records(path: Path) -> list[Any]:
    """The records of a trail file; a line that is not JSON becomes None (a fault)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".csv":
        return [_json_or_none(row.get("record", "")) for row in csv.DictReader(text.splitlines())]
    return [_json_or_none(line) for line in text.splitlines() if line.strip()]


def _json_or_none(text: str) -> Any:
    """Parsed JSON, or None."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
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
    except (OSError, ValueError) as exc:
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
    """Trusted checkpoint records (JSON lines, or one JSON object) kept by an auditor."""
    records = [r for r in read_records(path) if isinstance(r, dict)]
    if not records:
        raise InputError(f"{path}: no checkpoint records")
    return records
