"""Run `retention run` as a subprocess with a notify socket, and read what it says."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import user_env


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout: float = 20) -> bool:
        """Whether a datagram carrying `field` arrives within `timeout`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(field in m.split("\n") for m in self.messages):
                return True
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        return any(field in m.split("\n") for m in self.messages)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class DaemonProcess:
    """`python -m retention run` in `workdir`, its stdout parsed as JSON log lines."""

    def __init__(self, workdir: Path, env: dict[str, str], *, nofile: int | None = None) -> None:
        def limit() -> None:  # in the child, before exec: its descriptor limit
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "retention", "run"],
            cwd=workdir,
            env=user_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit if nofile is not None else None,
        )
        self.lines: list[dict[str, Any]] = []
        self.stderr: list[str] = []  # read as it comes, so a flood never fills the pipe
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.port = self._wait_port()

    def _read_stderr(self) -> None:
        """Collect stderr lines."""
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def _read(self) -> None:
        """Collect stdout lines."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"raw": line})

    def _wait_port(self, timeout: float = 20) -> int:
        """The HTTP port from the `http.listening` log line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if line.get("event") == "http.listening":
                    return int(line["port"])
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the rest of stderr
                raise RuntimeError(f"daemon exited: {''.join(self.stderr)}")
            time.sleep(0.05)
        raise TimeoutError("the daemon did not start listening")

    def url(self, path: str) -> str:
        """A URL on the daemon."""
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path: str, *, body: Any = None, token: str | None = None) -> tuple[int, str]:
        """(status, text) of a GET, or of a POST when `body` is given."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url(path), data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def events(self, name: str) -> list[dict[str, Any]]:
        """Log lines of one event."""
        return [line for line in self.lines if line.get("event") == name]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait."""
        self.proc.terminate()
        return self.proc.wait(timeout)
