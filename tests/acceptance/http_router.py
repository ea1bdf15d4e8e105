"""A server on loopback answering every request alike (a proxy's page, a framework's 404), and
a port nobody listens on: the wrong places a base URL can point to."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Router:
    """Answers every GET and DELETE with one fixed status, body and content type."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        answer = (status, body, content_type)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                """The same answer to everything."""
                self._reply()

            def do_DELETE(self) -> None:
                """The same answer to everything."""
                self._reply()

            def _reply(self) -> None:
                """Send the fixed answer."""
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[2])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        """A base URL pointing here."""
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def html_404() -> Router:
    """A proxy that answers an HTML 404 page to everything."""
    return Router(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")


def json_404() -> Router:
    """A FastAPI-style router: a JSON 404 to everything."""
    return Router(404, b'{"detail":"Not Found"}', "application/json")


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
