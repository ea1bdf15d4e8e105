"""What the shipper does with each answer of the daemon, and how long it waits. Pure.

- 2xx: sent.
- 400 naming items by index (`{"items": [{"index": i, "error": ...}]}`): those items can never
  be accepted, so they alone are dropped and the rest is sent again.
- 400 naming none (the daemon's JSON error), or 413 (too large): the batch is split in halves
  and each is sent again; a single record that is still refused is dropped.
- 401, 403 and 404 (wrong token, ingest off, not the daemon's URL), a 400 that is not the
  daemon's (not its JSON error: a proxy, or another server at `ingest_url`, would otherwise
  have every ID dropped one by one), 5xx, 429, any other answer and no answer at all: kept in
  the spool, tried again after an exponential backoff with jitter.

The daemon's reasons are shown in the app's log: control characters are removed (no forged
lines), the token is redacted, and each is cut to 200 characters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from retention.redaction import scrub

Kind = Literal["sent", "drop", "split", "refused", "retry"]


@dataclass(frozen=True)
class Verdict:
    """One answer, judged."""

    kind: Kind
    bad: dict[int, str] = field(default_factory=dict)  # index in the batch -> the daemon's reason
    reason: str = ""  # for refused and retry: a short, secret-free account for a warning


def judge(status: int, body: Any, size: int) -> Verdict:
    """The verdict on a `status` answer with JSON `body` (None if not JSON) to `size` records."""
    if 200 <= status < 300:
        return Verdict("sent")
    if status == 400:
        if not _from_daemon(body):
            return Verdict(
                "refused",
                reason="400 that is not the daemon's (not its JSON error): is ingest_url the "
                "daemon's base URL, with https if it serves TLS?",
            )
        bad = _named_items(body, size)
        return Verdict("drop", bad) if bad else Verdict("split")
    if status == 413:
        return Verdict("split")
    if status == 401:
        return Verdict("refused", reason="401: the daemon refused the ingest token")
    if status == 403:
        return Verdict("refused", reason="403: the daemon refused this client")
    if status == 404:
        return Verdict(
            "refused",
            reason="404: ingest is off at the daemon (no token configured there), "
            "or ingest_url is not the daemon's base URL",
        )
    return Verdict("retry", reason=f"the daemon answered {status}")


def _from_daemon(body: Any) -> bool:
    """Whether a 400's body is the daemon's: a JSON object with its `error` or `items`."""
    return isinstance(body, dict) and (
        isinstance(body.get("error"), str) or isinstance(body.get("items"), list)
    )


def _named_items(body: Any, size: int) -> dict[int, str]:
    """The items a 400 names by a valid index, with their reasons (shortened)."""
    items = body.get("items") if isinstance(body, dict) else None
    named: dict[int, str] = {}
    for item in items if isinstance(items, list) else ():
        index = item.get("index") if isinstance(item, dict) else None
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size:
            error = item.get("error")
            named[index] = (scrub(error, 200) or "refused") if isinstance(error, str) else "refused"
    return named


def backoff(failures: int, first: float, cap: float, rand: random.Random) -> float:
    """Seconds to wait after `failures` (>= 1) failures in a row: doubling from `first`, at
    most `cap`, each wait drawn between half and all of that (jitter keeps a fleet of apps
    from retrying in step)."""
    ceiling = min(cap, first * 2.0 ** min(failures - 1, 60))
    return ceiling * (0.5 + 0.5 * rand.random())


def retry_after(value: str | None, cap: float) -> float:
    """A `Retry-After` of seconds, at most `cap`; 0 when absent or not a number."""
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return min(cap, seconds) if seconds > 0 and seconds == seconds else 0.0
