"""What a notification says: one JSON object per event, built from a committed audit record
or from a fault a process logged (a `Notice`), with an idempotency key and a severity."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

from retention.core.times import format_time
from retention.core.vocabulary import Event, Notice
from retention.redaction import redact_tree

VERSION = 1
# the audit record's fields a notification carries (the trail's own redacted values)
RECORD_FIELDS = (
    "event",
    "ts",
    "chain",
    "seq",
    "response_id",
    "provider",
    "account",
    "policy",
    "deadline",
    "http_status",
    "error",
    "details",
)
# syslog's names and codes (RFC 5424, section 6.2.1)
SEVERITIES = {"err": 3, "warning": 4, "notice": 5, "info": 6}
_ERR = {
    Event.RESPONSE_FAILED,
    Event.PROVIDER_AUTH_FAILED,
    Event.PROVIDER_MISCONFIGURED,
    Event.PROVIDER_CANNOT_DELETE,
    Event.ERASURE_OVERDUE,
    Event.POLICY_REJECTED,
    *Notice,
}
_WARNING = {
    Event.PROVIDER_UNREACHABLE,
    Event.RESPONSE_DELETE_ATTEMPT_FAILED,
    Event.RESPONSE_DELETE_UNCONFIRMED,
}
_NOTICE = {
    Event.DAEMON_STARTED,
    Event.DAEMON_STOPPED,
    Event.POLICY_LOADED,
    Event.ERASURE_REQUESTED,
    Event.ERASURE_COMPLETED,
    Event.RESPONSE_REQUEUED,
    Event.RESPONSE_HELD,
    Event.RESPONSE_RELEASED,
}
_counter = itertools.count(1)


def severity(event: str) -> str:
    """`err` for failures and missed deadlines, `warning` for what is retried, `notice` for
    what changes the daemon's course, `info` for the rest."""
    if event in _ERR:
        return "err"
    if event in _WARNING:
        return "warning"
    return "notice" if event in _NOTICE else "info"


def from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The notification of one committed audit record; its key is the record's hash (unique
    across chains and ledgers), so a receiver can drop a repeat."""
    message = {"version": VERSION, "source": "audit"}
    message.update({name: record.get(name) for name in RECORD_FIELDS})
    actor = record.get("actor")
    message["host"] = actor.get("host") if isinstance(actor, dict) else None
    message["severity"] = severity(str(record.get("event")))
    message["idempotency_key"] = record.get("hash") or _digest(message)
    return redact_tree(message)  # type: ignore[no-any-return]


def from_notice(name: Notice, now: datetime | None = None, **fields: Any) -> dict[str, Any]:
    """The notification of a fault this process logged (nothing committed: no chain or seq);
    `error` and the other fields (`details`) as the log line has them, redacted."""
    error = fields.pop("error", None)
    message: dict[str, Any] = {
        "version": VERSION,
        "source": "log",
        "event": str(name),
        "ts": format_time(now or datetime.now(UTC)),
    }
    message.update(dict.fromkeys(RECORD_FIELDS[2:], None))
    message.update(
        error=None if error is None else str(error),
        details=fields or None,
        host=socket.gethostname(),
        severity=severity(str(name)),
    )
    # unique per process and moment: this pid, the time and a counter
    message["idempotency_key"] = _digest({**message, "pid": os.getpid(), "n": next(_counter)})
    return redact_tree(message)  # type: ignore[no-any-return]


def _digest(value: dict[str, Any]) -> str:
    """SHA-256 hex of a value's canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
