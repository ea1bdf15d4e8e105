"""Checkpoint witnesses: a copy of every signed checkpoint, kept somewhere this host's operator
cannot quietly rewrite.

Whoever holds the signing key could rewrite the ledger and the audit file and sign again; the
checkpoints already handed to a witness let an auditor catch that later. Witnesses are best
effort and never hold up deletions: `publish` never raises. What a witness could not take waits,
oldest first, ahead of anything newer: in a 0600 spool file for a URL witness (so it survives a
restart), in memory for a folder. Every failure is logged as `audit.witness_failed` and counted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from retention.audit.hashchain import canonical
from retention.config.settings import WitnessSettings
from retention.errors import AuditError, ConfigError
from retention.files import fsync_folder, make_private, make_private_if_present
from retention.logs import get_logger
from retention.redaction import redact, register_secret

__all__ = ["MAX_SPOOLED", "TIMEOUT_S", "WitnessSettings", "Witnesses"]

MAX_SPOOLED = 10_000  # checkpoints per witness; past it the oldest go (the ledger has them all)
TIMEOUT_S = 5.0  # per request: a witness that hangs delays the next checkpoint, never a sweep
_CHAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a chain name is part of a file name
log = get_logger("retention.audit")


class Witnesses:
    """Every configured witness; `publish` hands each one a checkpoint and never raises."""

    def __init__(
        self,
        settings: Iterable[WitnessSettings],
        *,
        timeout_s: float = TIMEOUT_S,
        max_spooled: int = MAX_SPOOLED,
    ) -> None:
        settings = tuple(settings)
        self._http = (
            httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)
            if any(s.url for s in settings)
            else None
        )
        self._witnesses = [_make(s, self._http, max_spooled) for s in settings]
        self.names = tuple(w.name for w in self._witnesses)
        self.sent = dict.fromkeys(self.names, 0)  # checkpoints delivered
        self.failed = dict.fromkeys(self.names, 0)  # attempts that failed
        self._lock = threading.Lock()

    def publish(self, record: dict[str, Any]) -> None:
        """Send the checkpoint `record` to every witness, after what each still holds."""
        with self._lock:
            try:
                line = _line(record)
            except (TypeError, ValueError) as exc:
                for name in self.names:
                    self._failed(name, str(exc))
                return
            for witness in self._witnesses:
                self._attempt(witness, line)

    def retry_spooled(self) -> None:
        """Send what the witnesses still hold (call now and then while any is behind)."""
        with self._lock:
            for witness in self._witnesses:
                if witness.spool.count:
                    self._attempt(witness, None)

    def spooled(self, name: str) -> int:
        """How many checkpoints witness `name` has not taken yet."""
        return next((w.spool.count for w in self._witnesses if w.name == name), 0)

    def close(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            self._http.close()

    def _attempt(self, witness: _Witness, line: str | None) -> None:
        """Deliver through one witness, turning any failure into a log line and a count."""
        try:
            delivered = witness.deliver(line)
        except Exception as exc:  # never raise: a refusal, a network or disk error, or a bug
            failure = exc.__cause__ if isinstance(exc, _Undelivered) else exc
            self.sent[witness.name] += exc.delivered if isinstance(exc, _Undelivered) else 0
            expected = isinstance(failure, OSError | httpx.HTTPError | AuditError)
            self._failed(witness.name, _describe(failure), None if expected else failure)
            return
        self.sent[witness.name] += delivered
        held = delivered - (line is not None)
        if held:
            log.info("audit.witness_caught_up", witness=witness.name, delivered=held)

    def _failed(self, name: str, error: str, exc_info: BaseException | None = None) -> None:
        """Count and log one failed attempt (with the traceback when it was unexpected)."""
        self.failed[name] += 1
        extra = {"exc_info": exc_info} if exc_info is not None else {}
        log.warning("audit.witness_failed", witness=name, error=redact(error), **extra)


class _Undelivered(Exception):
    """A delivery stopped at a failure after `delivered` lines; the rest are kept."""

    def __init__(self, delivered: int) -> None:
        super().__init__(delivered)
        self.delivered = delivered


class _Spool:
    """Lines a witness has not taken yet: in a 0600 file (kept across restarts), or in memory."""

    def __init__(self, path: Path | None, *, name: str, limit: int) -> None:
        self.path, self.name, self.limit = path, name, limit
        self._memory: list[str] = []
        try:
            self.count = len(self.read())
        except (OSError, UnicodeDecodeError):
            self.count = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold `<spool>.lock`: a CLI sweep and the daemon may share one spool."""
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            make_private(fd, f"{self.path}.lock")
            fcntl.flock(fd, fcntl.LOCK_EX)
            make_private_if_present(self.path)  # found 0644: made 0600, with a warning
            yield
        finally:
            os.close(fd)

    def read(self) -> list[str]:
        """The held lines, oldest first."""
        if self.path is None:
            return list(self._memory)
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def write(self, lines: list[str]) -> None:
        """Hold exactly `lines` (the newest `limit` of them), replacing the file atomically."""
        if len(lines) > self.limit:
            dropped, lines = len(lines) - self.limit, lines[-self.limit :]
            log.warning("audit.witness_spool_full", witness=self.name, dropped=dropped)
        if self.path is None:
            self._memory = lines
        elif not lines:
            self.path.unlink(missing_ok=True)
        else:
            _replace(self.path, "".join(line + "\n" for line in lines))
        self.count = len(lines)


class _Witness:
    """One witness: delivers lines oldest first and keeps, in its spool, what it could not."""

    def __init__(self, name: str, spool: _Spool) -> None:
        self.name, self.spool = name, spool

    def deliver(self, line: str | None) -> int:
        """Send the held lines, then `line`; how many went. Stops at the first failure."""
        with self.spool.locked():
            pending = self.spool.read()
            held = len(pending)
            if line is not None:
                pending.append(line)
            for index, item in enumerate(pending):
                try:
                    self.send(item)
                except Exception as exc:
                    self.spool.write(pending[index:])
                    raise _Undelivered(index) from exc
            if held:
                self.spool.write([])
            return len(pending)

    def send(self, line: str) -> None:
        """Hand over one line, or raise."""
        raise NotImplementedError


class _FolderWitness(_Witness):
    """Appends each checkpoint to `DIR/<chain>.checkpoints.jsonl` and fsyncs it."""

    def __init__(self, folder: Path, *, name: str, limit: int) -> None:
        super().__init__(name, _Spool(None, name=name, limit=limit))
        self.folder = folder

    def send(self, line: str) -> None:
        """Append one line (0600 file, 0700 folder, both made when missing)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.folder / f"{json.loads(line)['chain']}.checkpoints.jsonl"
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            _write_all(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_folder(self.folder)


class _UrlWitness(_Witness):
    """POSTs each checkpoint's canonical JSON line; anything but a 2xx is a failure."""

    def __init__(self, settings: WitnessSettings, http: httpx.Client, *, limit: int) -> None:
        super().__init__(
            settings.name, _Spool(settings.spool_file, name=settings.name, limit=limit)
        )
        self.url, self.token_env, self.http = str(settings.url), settings.token_env, http
        if self.token_env:  # known from the start, so no log line or error can show it
            register_secret(os.environ.get(self.token_env, "").strip())

    def send(self, line: str) -> None:
        """POST one line, with the bearer token when its variable is set."""
        headers = {"Content-Type": "application/json"}
        token = os.environ.get(self.token_env, "").strip() if self.token_env else ""
        if token:
            register_secret(token)
            headers["Authorization"] = f"Bearer {token}"
        answer = self.http.post(self.url, content=line.encode(), headers=headers)
        if not 200 <= answer.status_code < 300:
            raise AuditError(f"HTTP {answer.status_code}")


def _line(record: dict[str, Any]) -> str:
    """The checkpoint's canonical JSON line; its chain names a file, so it must be a plain name."""
    chain = record.get("chain")
    if not isinstance(chain, str) or not _CHAIN.fullmatch(chain):
        raise ValueError(f"refused a record of chain {chain!r}")
    return canonical(record)


def _make(settings: WitnessSettings, http: httpx.Client | None, limit: int) -> _Witness:
    """The witness `settings` describe."""
    if settings.dir is not None:
        return _FolderWitness(settings.dir, name=settings.name, limit=limit)
    if settings.url is None or settings.spool_file is None or http is None:
        raise ConfigError("a witness needs a dir, or a url and a spool_file", key="audit.witness")
    return _UrlWitness(settings, http, limit=limit)


def _describe(exc: BaseException | None) -> str:
    """A short text for a failure: the OS's words, httpx's error, or the status."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, AuditError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace(path: Path, text: str) -> None:
    """Write `text` to a 0600 temporary file beside `path`, fsync it, and rename it over `path`."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _write_all(fd, text.encode())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
