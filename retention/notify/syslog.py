"""A syslog sink: one message per notification, RFC 5424 (or the classic BSD format, RFC 3164,
with `format: bsd`), over UDP (fire and forget: nothing is spooled) or a local unix socket
(`/dev/log`; reconnected after a failure, the message sent once more).

RFC 5424: `<PRI>1 TS HOST retention PID EVENT - JSON`, where PRI is facility * 8 + severity,
TS the event's time, EVENT the event name as MSGID, no structured data, and the message the
notification's JSON (ASCII). BSD: `<PRI>Mmm dd hh:mm:ss HOST retention[PID]: JSON`.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

from retention.config.notify_settings import FACILITIES, NotifySettings
from retention.notify.message import SEVERITIES
from retention.notify.sink import CAPACITY, Sink

APP_NAME = "retention"
MAX_UDP = 2048  # what every receiver must take (RFC 5426); longer: `details` left out
MAX_UNIX = 8192
SEND_TIMEOUT_S = 1.0


class SyslogSink(Sink):
    """Sends each notification as one syslog message."""

    kind = "syslog"

    def __init__(self, settings: NotifySettings, *, capacity: int = CAPACITY) -> None:
        super().__init__(settings, capacity=capacity)
        assert settings.syslog is not None
        self.address = settings.syslog
        self.unix = self.address.startswith("unix:")
        self.limit = MAX_UNIX if self.unix else MAX_UDP
        self.facility = FACILITIES[settings.facility]
        self.hostname = _hostname()
        self._socket: socket.socket | None = None
        self._target: Any = None  # where a UDP datagram goes, as resolved

    def _work(self, batch: list[dict[str, Any]]) -> None:
        """Send each; a failure counts it and loses it (the audit trail has the event)."""
        for message in batch:
            data = self.format(message)
            try:
                self._send(data)
            except OSError as exc:
                self._close_socket()
                if self.unix:  # reconnect, and once more
                    try:
                        self._send(data)
                    except OSError as again:
                        self._close_socket()
                        self._lost(again)
                        continue
                else:
                    self._lost(exc)
                    continue
            self.sent += 1
            self._problem = None

    def format(self, message: dict[str, Any]) -> bytes:
        """The datagram of one notification."""
        event = str(message.get("event") or "-")
        pri = self.facility * 8 + SEVERITIES.get(str(message.get("severity")), 6)
        body = _json(message)
        if len(body) > self.limit - 300:  # room for the header
            body = _json({**message, "details": None, "details_left_out": True})
        moment = _moment(message.get("ts"))
        if self.settings.format == "bsd":
            stamp = f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S}"
            return f"<{pri}>{stamp} {self.hostname} {APP_NAME}[{os.getpid()}]: {body}".encode()
        ts = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
        msgid = "".join(c for c in event if 33 <= ord(c) <= 126)[:32] or "-"
        header = f"<{pri}>1 {ts} {self.hostname} {APP_NAME} {os.getpid()} {msgid} -"
        return f"{header} {body}".encode()

    def _send(self, data: bytes) -> None:
        """One message through the socket, made when missing."""
        if self._socket is None:
            self._socket = self._connect()
        if self.unix:
            if self._socket.type == socket.SOCK_STREAM:
                self._socket.sendall(data + b"\n")
            else:
                self._socket.send(data)
        else:
            self._socket.sendto(data, self._target)

    def _connect(self) -> socket.socket:
        """A socket to the receiver: the unix path (datagram, else stream), or UDP to the
        first address the host resolves to."""
        if self.unix:
            path = self.address.removeprefix("unix:")
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(socket.AF_UNIX, kind)
                sock.settimeout(SEND_TIMEOUT_S)
                try:
                    sock.connect(path)
                except OSError as exc:
                    sock.close()
                    if exc.errno == errno.EPROTOTYPE:
                        continue
                    raise
                return sock
            raise OSError(errno.EPROTOTYPE, "neither a datagram nor a stream socket", path)
        host, _, port = self.address.removeprefix("udp://").rpartition(":")
        if not host:  # no port given
            host, port = port, "514"
        family, kind, proto, _, target = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)  # a full send buffer loses a datagram, never waits
        self._target = target
        return sock

    def _lost(self, exc: OSError) -> None:
        """Count a message that could not be sent; warn once per distinct cause."""
        self.failed += 1
        self.dropped += 1
        self._warn_once(
            "notify.failed",
            f"{exc.strerror or exc}",
            hint="syslog messages are not kept; the audit trail has every event",
        )

    def _close_socket(self) -> None:
        """Forget the socket (made again for the next message)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _shut(self) -> None:
        """Close the socket."""
        self._close_socket()


def _json(message: dict[str, Any]) -> str:
    """Compact, ASCII-only JSON (no byte-order mark needed, no byte a relay could mangle)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=True, default=str)


def _moment(ts: Any) -> datetime:
    """The event's time, or now when it has none that reads."""
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def _hostname() -> str:
    """This host's name as syslog allows it (printable ASCII, no space), or `-`."""
    name = "".join(c for c in socket.gethostname() if 33 <= ord(c) <= 126)[:255]
    return name or "-"
