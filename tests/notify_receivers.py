"""Real receivers for notification tests: a webhook (http.server on 127.0.0.1) that can start
late, and a syslog UDP socket, each keeping what it was sent."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    """A TCP port nothing listens on now (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Webhook:
    """An HTTP receiver on 127.0.0.1:`port`, not listening until `start()`; answers `status`."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.received: list[dict[str, Any]] = []  # each body, decoded
        self.headers: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Webhook:
        """Listen from now on."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                """Keep the body and headers; answer the receiver's status."""
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    if receiver.status < 300:
                        receiver.received.append(json.loads(body))
                        receiver.headers.append(dict(self.headers.items()))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[str]:
        """The event names received, in order."""
        with self._lock:
            return [body["event"] for body in self.received]


class SyslogUdp:
    """A UDP socket on 127.0.0.1 keeping every datagram."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.datagrams: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """The sink's `syslog:` value."""
        return f"udp://127.0.0.1:{self.port}"

    def _read(self) -> None:
        """Keep datagrams until closed."""
        while not self._stop:
            try:
                self.datagrams.append(self.sock.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    def messages(self) -> list[dict[str, Any]]:
        """Each RFC 5424 message: its PRI, MSGID and JSON body."""
        found = []
        for data in list(self.datagrams):
            text = data.decode()
            header, _, body = text.partition(" - ")
            pri = int(header[1 : header.index(">")])
            found.append({"pri": pri, "msgid": header.split()[-1], "body": json.loads(body)})
        return found

    def close(self) -> None:
        """Stop reading."""
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Poll `check` every 50 ms until it holds or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()
