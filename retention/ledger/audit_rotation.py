"""Rotating the audit file: when, to which name, and where each chain stopped in the files
rotated away.

The live file (`audit.file`, say `audit.jsonl`) is renamed `audit.000001.jsonl`, then
`audit.000002.jsonl`, ...: the number grows by one at each rotation and is never reused, so the
names sort in the order the files were written, and the live file sorts after them
(`audit*.jsonl`). The chains go on in the new live file: its first record of a chain follows
the last one of that chain in the file before, so the files read in order are one trail.

Rotation happens while a writer publishes, under the live file's lock: writers of other
processes queue on that lock, then find the file renamed and append to the new one. Before the
rename, each chain's last seq and hash in the files rotated so far is written to the state file
`audit.jsonl.rotation.json` (0600), with the last rotation's number: a writer whose chain has no
line in the live file yet continues from there, so rotated files may be moved away or deleted
(shipped to write-once storage) without the live file starting its chains again from seq 1.

A state file that is lost, or older than the rotated files (restored from a copy), is brought
up to date from the rotated files numbered after it, under the same lock, and written back:
the chains go on where those files stop, and the numbers go on from the highest one. With no
rotated file left and a live file that goes on from rotated ones (a chain in it starts past
seq 1), the next number is unknown: the live file is not rotated (that would reuse a shipped
name) until the state file is restored or written by hand.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO

from retention.config.settings import AuditSettings
from retention.errors import AuditError
from retention.files import fsync_folder

STATE_SUFFIX = ".rotation.json"
STATE_VERSION = 1
_CHAIN = re.compile(rb'"chain":"([^"\\]*)"')  # in our canonical lines, the first is the record's
_FIRST_LINE_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class RotationRule:
    """When the live file is rotated, and how many rotated files are kept."""

    max_bytes: int | None = None
    interval: timedelta | None = None
    keep: int | None = None  # None keeps every rotated file

    @classmethod
    def of(cls, audit: AuditSettings) -> RotationRule:
        """The rule `audit.rotate_bytes`, `audit.rotate_interval` and `audit.keep` set."""
        return cls(audit.rotate_bytes, audit.rotate_interval, audit.keep)

    @property
    def active(self) -> bool:
        """Whether the file is rotated at all."""
        return self.max_bytes is not None or self.interval is not None

    def reason(self, size: int, first_ts: str | None, newest_ts: str | None) -> str | None:
        """Why a live file of `size` bytes whose first record is of `first_ts` is due, before
        records of `newest_ts` are appended: `size`, `interval`, or None when it is not."""
        if size == 0:
            return None
        if self.max_bytes is not None and size >= self.max_bytes:
            return "size"
        if self.interval is not None and first_ts and newest_ts:
            try:
                age = _when(newest_ts) - _when(first_ts)
            except ValueError:
                return None
            if age >= self.interval:
                return "interval"
        return None


@dataclass
class RotationState:
    """What the rotated files held: the last rotation's number, and each chain's last seq and
    hash in them."""

    number: int = 0
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    kept: bool = True  # whether the state file holds it (False: lost, and not written again)

    def as_json(self) -> str:
        """The state file's text."""
        chains = {name: {"seq": s, "hash": h} for name, (s, h) in sorted(self.heads.items())}
        body = {"rotation_state": STATE_VERSION, "last_rotated": self.number, "chains": chains}
        return json.dumps(body, indent=2, sort_keys=True) + "\n"


def state_path(path: Path) -> Path:
    """The state file beside the live file `path`."""
    return path.with_name(path.name + STATE_SUFFIX)


def read_state(path: Path) -> RotationState:
    """The rotation state of the live file `path` (empty when it was never rotated); an
    AuditError naming the state file when it cannot be read or is not one."""
    return _stored_state(path) or RotationState()


def _stored_state(path: Path) -> RotationState | None:
    """The state file's rotation state; None when there is no state file."""
    target = state_path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"audit rotation state {target}: cannot read: {exc}") from None
    try:
        body = json.loads(text)
        state = RotationState(
            number=_whole(body["last_rotated"]),
            heads={
                str(name): (_whole(head["seq"]), _hex64(head["hash"]))
                for name, head in body["chains"].items()
            },
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        raise AuditError(
            f"audit rotation state {target}: not a rotation state; restore it from a copy, or "
            "remove it to have it rebuilt from the rotated files left"
        ) from None
    return state


def current_state(path: Path) -> tuple[RotationState, list[Path]]:
    """The rotation state writers go on from, read under the live file's lock, with the rotated
    files it had to be brought up to date from. A state file older than the rotated files, or
    lost (then every rotated file left is read), takes their chains' heads and the highest
    number, and is written again, unless the next number is still unknown (`unknown_number`)."""
    stored = _stored_state(path)
    state = stored or RotationState(kept=False)
    newer = [(number, file) for number, file in rotated_files(path) if number > state.number]
    for _, file in newer:
        for chain, head in _heads_of(file, path).items():
            if head[0] >= state.heads.get(chain, (0, ""))[0]:
                state.heads[chain] = head
    if newer:
        state.number = newer[-1][0]
        if stored is not None or _goes_on(path, state.heads) is None:
            with suppress(OSError):  # rebuilt again at the next write; a rotation says why
                write_state(path, state)
                state.kept = True
    return state, [file for _, file in newer]


def unknown_number(path: Path, state: RotationState) -> str | None:
    """Why the next rotated file's number is unknown, when it is: the state file was lost with
    the rotated files that tell it, and the live file goes on past those left (or, with none
    left, past seq 1), so any number might be one a shipped file has."""
    return None if state.kept else _goes_on(path, state.heads)


def _heads_of(file: Path, path: Path) -> dict[str, tuple[int, str]]:
    """`chain_heads` of a rotated file, for the state of the live file `path`; an AuditError
    naming both when it cannot be read (a file gone meanwhile has none)."""
    try:
        return chain_heads(file)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuditError(
            f"audit rotation state {state_path(path)}: cannot bring it up to date from {file}: "
            f"{exc.strerror}"
        ) from None


def _goes_on(path: Path, heads: dict[str, tuple[int, str]]) -> str | None:
    """Why the next rotated file's number is unknown, the state being lost: a chain in the live
    file `path` starts past the seq the rotated files left end it at (newer ones are gone), or,
    with none left, past seq 1. None when it follows them, or is empty or missing."""
    seen: set[bytes] = set()
    try:
        with open(path, "rb") as handle:
            for raw in _lines(handle):
                match = _CHAIN.search(raw)
                if match is None or match.group(1) in seen:
                    continue
                seen.add(match.group(1))
                record = _record_or_none(raw)
                if record is None or (heads and record[0] not in heads):
                    continue  # a chain the files left do not hold: it tells nothing
                head = heads.get(record[0], (0, ""))[0]
                if record[1] > head + 1:
                    where = (
                        f"past seq {head}, where the rotated files left end it (newer ones are "
                        "gone)"
                        if heads
                        else "and no rotated file is left"
                    )
                    return (
                        f"the rotation state is lost, and chain {record[0]} starts at seq "
                        f"{record[1]} in {path.name}, {where}: the next number is unknown"
                    )
    except FileNotFoundError:
        return None
    return None


def _whole(value: Any) -> int:
    """A whole number from the state file."""
    if type(value) is not int or value < 0:
        raise ValueError("not a whole number")
    return value


def _hex64(value: Any) -> str:
    """A record hash from the state file."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("not a hash")
    return value


def write_state(path: Path, state: RotationState) -> None:
    """Replace the state file whole (a private temporary file, synced, renamed over it)."""
    target = state_path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = memoryview(state.as_json().encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    fsync_folder(target.parent)


def _parts(path: Path) -> tuple[str, str]:
    """The live file's name split around where the number goes: `audit`, `.jsonl`."""
    suffix = path.suffix
    return path.name[: len(path.name) - len(suffix)], suffix


def rotated_name(path: Path, number: int) -> Path:
    """The name of the `number`th file rotated from `path`: `audit.000042.jsonl`."""
    stem, suffix = _parts(path)
    return path.with_name(f"{stem}.{number:06d}{suffix}")


def rotated_files(path: Path) -> list[tuple[int, Path]]:
    """The files rotated from `path` still in its folder, with their numbers, oldest first."""
    stem, suffix = _parts(path)
    pattern = re.compile(re.escape(stem) + r"\.(\d{6,})" + re.escape(suffix))
    found = []
    for entry in os.scandir(path.parent):
        match = pattern.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), path.with_name(entry.name)))
    return sorted(found)


def trail_files(path: Path) -> list[Path]:
    """Every file of the trail, in order: the rotated ones still there, then the live one."""
    files = [rotated for _, rotated in rotated_files(path)]
    return [*files, path] if path.exists() else files


def chain_heads(path: Path) -> dict[str, tuple[int, str]]:
    """Each chain's last seq and hash in a trail file, read once from its start."""
    last: dict[bytes, bytes] = {}
    heads: dict[str, tuple[int, str]] = {}

    def take(raw: bytes) -> None:
        record = _record_or_none(raw)
        if record is not None:
            chain, seq, digest = record
            if seq >= heads.get(chain, (0, ""))[0]:
                heads[chain] = (seq, digest)

    with open(path, "rb") as handle:
        for raw in _lines(handle):
            match = _CHAIN.search(raw)
            if match:
                last[match.group(1)] = raw
            elif raw.strip():
                take(raw)  # a line the quick look cannot place: read whole now, not kept
    for raw in last.values():
        take(raw)
    return heads


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of a regular file, each at most `_FIRST_LINE_LIMIT` bytes: a longer one is
    no record of ours and is skipped without being held, and anything but a regular file
    (`/dev/full` reads as one endless line) yields nothing, so memory stays flat."""
    if not S_ISREG(os.fstat(handle.fileno()).st_mode):
        return
    while raw := handle.readline(_FIRST_LINE_LIMIT):
        if raw.endswith(b"\n") or len(raw) < _FIRST_LINE_LIMIT:
            yield raw
            continue
        while (rest := handle.readline(_FIRST_LINE_LIMIT)) and not rest.endswith(b"\n"):
            pass  # the rest of an overlong line, dropped a piece at a time


def _record_or_none(raw: bytes) -> tuple[str, int, str] | None:
    """A line's chain, seq and hash, when it is an audit record."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    chain, seq, digest = record.get("chain"), record.get("seq"), record.get("hash")
    if isinstance(chain, str) and type(seq) is int and isinstance(digest, str):
        return chain, seq, digest
    return None


@dataclass(frozen=True, slots=True)
class Rotated:
    """One rotation done."""

    path: Path  # the name the live file now has
    size: int


def rotate_file(path: Path, fd: int, state: RotationState) -> Rotated:
    """Rename the live file `path`, open as `fd` and locked by the caller, to the next rotated
    name, once the state file says where its chains stop; `state` is `current_state`'s. Nothing
    is renamed if that fails, or when the next number is unknown (never a name used before)."""
    unknown = unknown_number(path, state)
    if unknown is not None:
        raise AuditError(
            f"cannot rotate {path}: {unknown}; restore {state_path(path)} from a "
            'copy, or write it with the number of the last file rotated: {"rotation_state": 1, '
            '"last_rotated": N, "chains": {}}'
        )
    size = os.fstat(fd).st_size
    state.heads.update(chain_heads(path))
    highest = max((number for number, _ in rotated_files(path)), default=0)
    state.number = max(state.number, highest) + 1
    target = rotated_name(path, state.number)
    if target.exists():  # a file of that name put there by hand: never overwritten
        raise AuditError(f"cannot rotate {path}: {target} exists")
    write_state(path, state)
    os.fsync(fd)
    os.rename(path, target)
    fsync_folder(path.parent)
    return Rotated(target, size)


def prune(path: Path, keep: int) -> Iterator[tuple[Path, OSError | None]]:
    """Delete the oldest rotated files beyond the newest `keep`; each with the error that kept
    it, if any."""
    rotated = rotated_files(path)
    for _, old in rotated[: max(0, len(rotated) - keep)]:
        try:
            old.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            yield old, exc
            continue
        yield old, None


def first_ts(fd: int, path: Path) -> str | None:
    """The `ts` of the first record in the file open as `fd` (None when empty or unreadable)."""
    if not S_ISREG(os.fstat(fd).st_mode):
        return None
    try:
        with open(path, "rb") as handle:
            raw = handle.readline(_FIRST_LINE_LIMIT)
        record = json.loads(raw)
    except (OSError, ValueError):
        return None
    ts = record.get("ts") if isinstance(record, dict) else None
    return ts if isinstance(ts, str) else None


def _when(ts: str) -> datetime:
    """An audit timestamp as a datetime."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))
