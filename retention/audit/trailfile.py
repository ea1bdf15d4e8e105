"""Read exported or live trails back: JSONL or CSV records, manifests, keys, checkpoints."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from retention.errors import InputError

csv.field_size_limit(sys.maxsize)


def read_records(path: Path) -> list[Any]:
    """The records of a trail file; a line that is not JSON becomes None (a fault)."""
    return list(iter_records(path))


def iter_records(path: Path) -> Iterator[Any]:
    """The records of a trail file, read as they are needed (a trail may be gigabytes)."""
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    with handle:
        try:
            if path.suffix.lower() == ".csv":
                for row in csv.DictReader(handle):
                    yield _json_or_none(row.get("record", ""))
                return
            for line in handle:
                if line.strip():
                    yield _json_or_none(line)
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None


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
    """Checkpoint records kept by an auditor or a witness: a file of JSON lines, or a folder
    of them (a `dir` witness keeps `CHAIN.checkpoints.jsonl` files)."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    records = [r for f in files for r in iter_records(f)]
    if not records or not all(
        isinstance(r, dict) and r.get("event") == "audit.checkpoint" for r in records
    ):
        raise InputError(f"{path}: not a file (or folder) of audit.checkpoint records")
    return records
