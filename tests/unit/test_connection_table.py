"""The connection table's rules on real socket pairs, and the throttled log of a flood."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from retention.daemon.connections import ConnectionLimits, ConnectionTable
from retention.daemon.throttled_log import ThrottledLog

LIMITS = ConnectionLimits(header_timeout=0.2, body_timeout=0.2, keepalive_timeout=0.2, cap=2)


class Lines:
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        """Keep one line."""
        self.lines.append((event, fields))


def test_the_oldest_idle_connection_makes_room() -> None:
    """Past the cap the connection idle the longest is closed, and the reason reported."""

    async def scenario() -> tuple[list[str], list[bool]]:
        shed: list[str] = []
        table = ConnectionTable(LIMITS, shed=shed.append)
        pairs = [socket.socketpair() for _ in range(3)]
        conns = [table.opened(ours) for ours, _ in pairs]
        states = [conn.closed for conn in conns]
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
        return shed, states

    shed, states = asyncio.run(scenario())
    assert shed == ["evicted"] and states == [True, False, False]


def test_a_silent_connection_is_closed_at_the_header_timeout() -> None:
    """A connection that never sends a request head is closed when the header timer ends."""

    async def scenario() -> tuple[list[str], bool, int]:
        shed: list[str] = []
        table = ConnectionTable(LIMITS, shed=shed.append)
        ours, theirs = socket.socketpair()
        conn = table.opened(ours)
        await asyncio.sleep(0.4)
        theirs.close()
        return shed, conn.closed, len(table)

    assert asyncio.run(scenario()) == (["header_timeout"], True, 0)


def test_a_flood_is_one_line_then_one_summary() -> None:
    """A thousand notes make one line at once and one counted line when the interval ends."""

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        lines = Lines()
        noise = ThrottledLog(lines, interval=0.2)
        for index in range(1000):
            noise.note("http.connections_shed", "evicted" if index % 2 else "header_timeout")
        await asyncio.sleep(0.5)
        return lines.lines

    first, summary = asyncio.run(scenario())
    assert first == ("http.connections_shed", {"header_timeout": 1})
    assert summary == (
        "http.connections_shed",
        {"evicted": 500, "header_timeout": 499, "interval_s": 0.2},
    )


def test_out_of_descriptor_errors_from_the_loop_are_throttled() -> None:
    """asyncio's "out of system resource" reports, repeated, become one counted line."""

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        lines = Lines()
        noise = ThrottledLog(lines, interval=0.2)
        loop = asyncio.get_running_loop()
        for _ in range(100):
            noise.loop_handler(
                loop,
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                },
            )
        await asyncio.sleep(0.3)
        return lines.lines

    assert asyncio.run(scenario()) == [
        ("http.accept_failed", {"EMFILE": 1}),
        ("http.accept_failed", {"EMFILE": 99, "interval_s": 0.2}),
    ]
