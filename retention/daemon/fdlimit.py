"""The process's file descriptors: its soft limit raised at start, and how many HTTP connections
fit under it beside what the daemon itself needs."""

from __future__ import annotations

import os
import resource

RAISE_TO = 65536  # the soft limit asked for at start (never above the hard limit)
# descriptors kept free for the daemon's own work beside HTTP connections: ledger connections
# (SQLite: file, -wal, -shm each, up to 15 pooled; PostgreSQL: one socket each), the audit file,
# locks, witnesses, worker threads' files; provider connections are added per provider
RESERVE = 64
SPARE = 64  # at most this many connections are taken between two turns of the event loop


def raise_soft_limit(target: int = RAISE_TO) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards `target`, never past the hard limit;
    (before, after). Nothing changes when it is already as high, or the call is refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, wanted
    return soft, soft


def soft_limit() -> int | None:
    """RLIMIT_NOFILE's soft limit; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def open_count() -> int:
    """Descriptors open in this process now (Linux's /proc; a guess elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32


def connection_cap(wanted: int, limit: int | None, in_use: int, reserve: int) -> tuple[int, int]:
    """(cap, spare): how many HTTP connections may be open at once, and how many descriptors
    beyond that connections being closed may hold until the loop releases them. `wanted` is
    lowered so that both, what is open now and `reserve` stay under the descriptor `limit`."""
    if limit is None:
        return wanted, SPARE
    room = limit - in_use - reserve
    spare = min(SPARE, max(1, room // 8))
    return max(1, min(wanted, room - spare)), spare
