"""The HTTP surface's listening sockets and accept loop, in front of aiohttp.

asyncio's own server accepts up to `backlog` sockets at a time whatever is open, and on
EMFILE logs "socket.accept() out of system resource" on every retry. This loop accepts one
socket at a time, only when the connection table has room (closing the oldest idle connection
at the cap), so the process stays under its descriptor limit; a failing accept is logged at
most once a minute (with a count) and retried after a short pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import socket
import ssl
import traceback
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from retention.daemon.connections import Connection, ConnectionTable, GuardedProtocol
from retention.daemon.throttled_log import OUT_OF_RESOURCES, ThrottledLog
from retention.logs import get_logger

BACKLOG = 1024  # connections the kernel queues (no descriptor of ours) until we take them
# connections taken between two turns of the event loop: a new client's head must reach the
# table (about five turns) before a cap's worth of newer connections arrive and evict it
BATCH = 16
RETRY_S = 0.1  # pause after a failed accept
_PEER_LEFT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
# a request head: its request line and each header line (name and value) at most MAX_FIELD
# bytes, at most MAX_HEADERS header lines: about 260 KiB at most, aiohttp's default is 1 MiB
MAX_FIELD = 8190
MAX_HEADERS = 32
log = get_logger("retention.http")


def open_sockets(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """Listening sockets for every address `host` names (port 0: one free port for all);
    OSError (address in use, name unknown) when one cannot be made."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # the same free port on every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accept loops on `sockets` feeding aiohttp's protocol, each connection in `table`."""

    def __init__(
        self,
        sockets: list[socket.socket],
        table: ConnectionTable,
        protocol: Callable[[], asyncio.Protocol],
        *,
        tls: ssl.SSLContext | None,
        noise: ThrottledLog,
    ) -> None:
        self.sockets, self.table, self._protocol = sockets, table, protocol
        self._tls, self._noise = tls, noise
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self.sockets[0].getsockname()[1])

    def start(self) -> None:
        """Start accepting."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._accept(sock)) for sock in self.sockets]

    async def close(self) -> None:
        """Stop accepting and close the listening sockets."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in self.sockets:
            sock.close()

    async def _accept(self, sock: socket.socket) -> None:
        """Take connections while the table has room: wait for one, then take what else is
        queued (while there is room), then let the loop serve what it has before taking more."""
        loop = asyncio.get_running_loop()
        while True:
            await self.table.wait_for_room()
            try:
                client, _ = await loop.sock_accept(sock)
                self._take(client)
                for _ in range(min(BATCH, self.table.limits.spare)):
                    if not self.table.has_room():
                        break
                    client, _ = sock.accept()
                    client.setblocking(False)
                    self._take(client)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno not in _PEER_LEFT:
                    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                    self._noise.note("http.accept_failed", name, error=exc.strerror)
                    if exc.errno in OUT_OF_RESOURCES:
                        self.table.evict_idle()  # one descriptor back, for the next accept
                    await asyncio.sleep(RETRY_S)
                continue
            except Exception as exc:  # a bug of ours must not end accepting for good
                self._noise.note("http.accept_crashed", type(exc).__name__, error=str(exc))
                await asyncio.sleep(RETRY_S)
                continue
            await asyncio.sleep(0)  # a flood must not starve requests already accepted

    def _take(self, client: socket.socket) -> None:
        """Put an accepted socket in the table and connect it to aiohttp."""
        conn = self.table.opened(client)
        if not conn.closed:
            conn.task = asyncio.get_running_loop().create_task(self._connect(conn))
            conn.task.add_done_callback(functools.partial(self._connected, conn))

    async def _connect(self, conn: Connection) -> None:
        """Hand the socket to aiohttp's protocol (after the TLS handshake, with TLS)."""
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self._tls is not None:
            tls = {
                "ssl": self._tls,
                "ssl_handshake_timeout": self.table.limits.header_timeout,
                "ssl_shutdown_timeout": 1.0,
            }
        await loop.connect_accepted_socket(
            lambda: GuardedProtocol(self.table, conn, self._protocol()), conn.sock, **tls
        )

    def _connected(self, conn: Connection, task: asyncio.Task[None]) -> None:
        """A connection that could not be made (a failed TLS handshake, or closed by a limit
        before it was, even before its task ran) gives its socket back, and its memory: the
        error's traceback holds asyncio's frames, which hold the TLS transport and its 256 KiB
        buffer in a cycle only a full garbage collection would free (~300 KB a failed
        handshake, hundreds of MB under a flood), so those frames are cleared now."""
        try:
            failure = task.exception()
        except asyncio.CancelledError as exc:
            failure = exc
        if failure is not None:
            conn.sock.close()
            self.table.lost(conn)
            traceback.clear_frames(failure.__traceback__)


class ClientErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger for the daemon. A request aiohttp cannot parse (a head too long,
    a bad chunk) or a body it cannot read is the client's doing: counted in one
    `http.bad_requests` line a minute, by kind, instead of a traceback each on stderr, which
    any client could fill with megabytes. Anything else (a bug of ours) keeps its traceback."""

    def __init__(self, noise: ThrottledLog) -> None:
        super().__init__(server_logger, {})
        self._noise = noise

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        """Count a client's error; log anything else as aiohttp would."""
        if isinstance(exc_info, (HttpProcessingError, web.RequestPayloadError)):
            self._noise.note("http.bad_requests", type(exc_info).__name__)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


class GuardedRunner(web.AppRunner):
    """aiohttp's runner with our listener in front instead of its sites, and the server's
    limits on what a client sends: a head of at most MAX_HEADERS lines of MAX_FIELD bytes
    (the head is held in memory while it arrives, about twice its size, for each of up to
    `max_connections` connections), bodies never decompressed (a 1 MB gzip body inflates to
    1 GiB, which aiohttp would inflate on the event loop, even of a request refused 401),
    and client errors in `ClientErrorLog`. `cleanup()` stops accepting first, then lets
    aiohttp finish its requests, then closes what is left."""

    listener: Listener | None = None

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_FIELD)
        kwargs.setdefault("max_field_size", MAX_FIELD)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        kwargs.setdefault("auto_decompress", False)
        kwargs.setdefault("logger", ClientErrorLog(ThrottledLog(log)))
        super().__init__(app, **kwargs)

    async def cleanup(self) -> None:
        """Stop accepting, finish in-flight requests, close every connection."""
        if self.listener is not None:
            await self.listener.close()
        await super().cleanup()
        if self.listener is not None:
            self.listener.table.close_all()
