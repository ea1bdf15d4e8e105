"""Every open connection of the HTTP surface and the limits on each: its request head within
`header_timeout` of the accept (a TLS handshake included), its body within `body_timeout` of
the head, `keepalive_timeout` idle between requests, and at most `cap` open at once.

aiohttp has no header timeout of its own: a client that sends half a request, or nothing,
keeps its socket for as long as it likes (issue 13: over 135 s), and a few hundred of them
exhaust the process's descriptors. Here each accepted socket is a `Connection` in a
`ConnectionTable` with one timer; `GuardedProtocol` wraps aiohttp's protocol to see it open and
close, and the `watch` middleware tells the table when a request head has arrived and when its
handler is done. At the cap, an idle connection (no request in progress: not yet sent a whole
head, or between requests) is closed to make room for the new one, so a flood of idle sockets
cannot lock out `/healthz`: first one silent for over `SETTLING` seconds, then one idle that
long, then the oldest. A client whose request is still on its way is among the youngest, so
it keeps its place whatever the flood's connections sent (one byte each, or nothing), unless a
cap's worth of newer ones arrives first. When every connection has a request in progress,
accepting waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader

# seconds a new or newly idle connection is young: a client whose request is on its way
SETTLING = 1.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits on each connection, in seconds, and how many may be open at once."""

    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    cap: int  # connections open at once
    spare: int = 64  # descriptors beyond `cap` for connections closed but not yet released


class Connection:
    """One accepted socket, from accept to close."""

    __slots__ = ("closed", "since", "sock", "task", "timer", "transport")

    def __init__(self, sock: socket.socket, since: float) -> None:
        self.sock = sock
        self.since = since  # the loop's time when accepted, or when it last became idle
        self.transport: asyncio.BaseTransport | None = None  # once connected (TLS: handshaken)
        self.task: asyncio.Task[Any] | None = None  # connecting it (a TLS handshake)
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def abort(self) -> None:
        """Drop it now: no TLS goodbye, no waiting for a peer that does not read."""
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]
        elif self.task is not None and not self.task.done():
            self.task.cancel()  # asyncio closes the half-made transport
        else:
            self.sock.close()


class ConnectionTable:
    """The open connections, oldest idle first, each with its one timer."""

    def __init__(self, limits: ConnectionLimits, *, shed: Callable[[str], None]) -> None:
        self.limits = limits
        self._shed = shed  # told the reason of each connection closed by a limit
        self._silent: dict[Connection, None] = {}  # not a byte received yet; oldest first
        self._idle: dict[Connection, None] = {}  # no request in progress; idle longest first
        self._active: set[Connection] = set()  # a request's handler runs
        self._closing: set[Connection] = set()  # aborted; the loop releases the descriptor next
        self._by_handler: dict[object, Connection] = {}
        self._room = asyncio.Event()

    def __len__(self) -> int:
        return len(self._silent) + len(self._idle) + len(self._active)

    def has_room(self) -> bool:
        """Whether a new connection can be taken: below the cap or an idle one to close, and
        the descriptors of those being closed within `spare`."""
        if len(self) + len(self._closing) >= self.limits.cap + self.limits.spare:
            return False
        return len(self) < self.limits.cap or bool(self._silent or self._idle)

    async def wait_for_room(self) -> None:
        """Return when a new connection can be taken."""
        while not self.has_room():
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), 0.1)

    def opened(self, sock: socket.socket) -> Connection:
        """Take a just-accepted socket; past the cap, close an idle connection (`evict_idle`),
        or this one when every other has a request in progress."""
        conn = Connection(sock, asyncio.get_running_loop().time())
        self._silent[conn] = None
        self._arm(conn, self.limits.header_timeout, "header_timeout")
        if len(self) > self.limits.cap and not self.evict_idle(but=conn):
            self.close(conn, "refused")
        return conn

    def evict_idle(self, *, but: Connection | None = None) -> bool:
        """Close an idle connection (never `but`): one silent for over `SETTLING` seconds, else
        one idle that long, else the oldest (a client just arrived goes last, whatever the
        others sent); False when none is idle."""
        silent = next((c for c in self._silent if c is not but), None)
        idle = next((c for c in self._idle if c is not but), None)
        settled = asyncio.get_running_loop().time() - SETTLING
        heads = [c for c in (silent, idle) if c is not None]
        if not heads:
            return False
        oldest = min(heads, key=lambda c: c.since)
        victim = next((c for c in heads if c.since < settled), oldest)
        self.close(victim, "evicted")
        return True

    def attach(self, conn: Connection, transport: asyncio.BaseTransport, handler: object) -> None:
        """The connection is made (a TLS handshake done): its transport and aiohttp handler."""
        conn.transport = transport
        conn.task = None
        self._by_handler[handler] = conn
        if conn.closed:
            transport.abort()  # type: ignore[attr-defined]

    def heard(self, conn: Connection) -> None:
        """The first bytes came in: a client at work, evicted after those that send nothing."""
        if conn in self._silent:
            del self._silent[conn]
            self._idle[conn] = None
            conn.since = asyncio.get_running_loop().time()

    def started(self, handler: object, body: StreamReader) -> None:
        """A request head arrived: no header timer now; the body has `body_timeout` to come."""
        conn = self._by_handler.get(handler)
        if conn is None or conn.closed:
            return
        self._silent.pop(conn, None)
        self._idle.pop(conn, None)
        self._active.add(conn)
        self._cancel_timer(conn)
        if not body.is_eof():
            conn.timer = asyncio.get_running_loop().call_later(
                self.limits.body_timeout, self._body_due, conn, body
            )

    def finished(self, handler: object, body: StreamReader) -> None:
        """A request's handler is done: the connection is idle, `keepalive_timeout` at most
        (a body still arriving, which aiohttp reads on to keep the connection, keeps its
        own deadline)."""
        conn = self._by_handler.get(handler)
        if conn is None or conn.closed:
            return
        self._active.discard(conn)
        self._idle.pop(conn, None)
        self._idle[conn] = None  # now the youngest idle one
        conn.since = asyncio.get_running_loop().time()
        if conn.timer is None or body.is_eof():
            self._arm(conn, self.limits.keepalive_timeout, None)
        self._room.set()

    def close(self, conn: Connection, reason: str | None) -> None:
        """Close `conn` now; `reason` (a limit it met) is reported, None for a normal close."""
        if conn.closed:
            return
        self._forget(conn)
        if conn.transport is not None or conn.task is not None:
            self._closing.add(conn)  # until `lost`: its descriptor is released by the loop
        conn.abort()
        if reason is not None:
            self._shed(reason)

    def lost(self, conn: Connection, handler: object = None) -> None:
        """The connection is gone (its descriptor closed, or about to be at once)."""
        self._forget(conn)
        self._closing.discard(conn)
        self._by_handler.pop(handler, None)
        self._room.set()

    def _forget(self, conn: Connection) -> None:
        """`conn` is closed or closing: it no longer counts as open."""
        conn.closed = True
        self._cancel_timer(conn)
        self._silent.pop(conn, None)
        self._idle.pop(conn, None)
        self._active.discard(conn)
        self._room.set()

    def close_all(self) -> None:
        """Close every connection still open (at shutdown, after aiohttp's own)."""
        for conn in [*self._silent, *self._idle, *self._active]:
            self.close(conn, None)

    def _arm(self, conn: Connection, seconds: float, reason: str | None) -> None:
        """One timer: close `conn` in `seconds` unless a request has started by then."""
        self._cancel_timer(conn)
        conn.timer = asyncio.get_running_loop().call_later(seconds, self._idle_due, conn, reason)

    def _idle_due(self, conn: Connection, reason: str | None) -> None:
        """The header or keep-alive timer ran out."""
        conn.timer = None
        if conn in self._silent or conn in self._idle:
            self.close(conn, reason)

    def _body_due(self, conn: Connection, body: StreamReader) -> None:
        """The body timer ran out: close when the body has still not all arrived."""
        conn.timer = None
        if not body.is_eof():
            self.close(conn, "body_timeout")
        elif conn in self._idle:
            self._arm(conn, self.limits.keepalive_timeout, None)

    @staticmethod
    def _cancel_timer(conn: Connection) -> None:
        """Stop `conn`'s timer."""
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the table told when it opens and closes."""

    def __init__(self, table: ConnectionTable, conn: Connection, inner: asyncio.Protocol) -> None:
        self._table, self._conn, self._inner = table, conn, inner
        self._heard = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Forward, after telling the table."""
        self._inner.connection_made(transport)
        self._table.attach(self._conn, transport, self._inner)

    def data_received(self, data: bytes) -> None:
        """Forward (the first time, after telling the table)."""
        if not self._heard:
            self._heard = True
            self._table.heard(self._conn)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Forward."""
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        """Tell the table, then forward."""
        self._table.lost(self._conn, self._inner)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Forward."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Forward."""
        self._inner.resume_writing()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def watch(table: ConnectionTable) -> Any:
    """A middleware telling `table` when each request's head arrived and its handler ended. A
    handler still reading a body when its connection is lost (the client left, or the body
    timeout closed it) ends quietly: nobody is there to answer, and aiohttp would log a
    traceback for each."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        table.started(request.protocol, request.content)
        try:
            return await handler(request)
        except ConnectionResetError:
            if request.transport is not None and not request.transport.is_closing():
                raise  # not this request's connection: an error of the handler's own
            return web.Response(status=408, text="the connection was lost mid-request")
        finally:
            table.finished(request.protocol, request.content)

    return middleware
