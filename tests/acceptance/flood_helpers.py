"""Floods of idle and half-sent connections, and how the daemon under them is watched:
shared by the connection and hostile-client tests."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import socket
import ssl
import threading
import time
import urllib.request
from typing import Any

from tests.acceptance.daemon_helpers import DaemonProcess

HEADER_TIMEOUT = 2.0
SERVER = (
    "sweep:\n  interval: 1s\ndiscover:\n  interval: 0s\n"
    "server:\n  listen: 127.0.0.1:0\n  header_timeout: 2s\n  body_timeout: 2s\n"
)
TOKEN = "ingest-token-for-tests"
FLOOD_EVENTS = ("http.connections_shed", "http.accept_failed")


class HealthProbe:
    """GET /healthz on a fresh connection every 50 ms from a thread; each latency kept."""

    def __init__(self, url: str, context: ssl.SSLContext | None = None) -> None:
        self.url, self.context = url, context
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Probe until stopped."""
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=5, context=self.context) as answer:
                    assert answer.status == 200
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - began)
            self._stop.wait(0.05)

    def stop(self) -> float:
        """Stop probing; the slowest answer in seconds."""
        self._stop.set()
        self._thread.join(10)
        return max(self.latencies)


def wait_healthy(daemon: DaemonProcess) -> None:
    """Wait until /healthz says 200 (the scheduler starts just after the port opens)."""
    end = time.monotonic() + 20
    while daemon.request("/healthz")[0] != 200:
        assert time.monotonic() < end, "the daemon never became healthy"
        time.sleep(0.05)


def open_fds(daemon: DaemonProcess) -> int:
    """Descriptors the daemon holds now."""
    return len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))


def ensure_fds(count: int) -> None:
    """Let this test process hold `count` more sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = soft if soft == resource.RLIM_INFINITY else max(soft, count + 256)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def flood(port: int, count: int) -> list[tuple[socket.socket, float]]:
    """`count` connections: half send nothing, half the start of a request head; each with the
    moment it was opened."""
    opened = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        opened.append((sock, time.monotonic()))
        if index % 2:
            with contextlib.suppress(OSError):  # closed already to make room: fine
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return opened


def wait_closed(opened: list[tuple[socket.socket, float]], timeout: float) -> list[float]:
    """How long each connection stayed open (until the daemon closed it); inf when it did not
    within `timeout`."""
    selector = selectors.DefaultSelector()
    for sock, began in opened:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, began)
    lifetimes: list[float] = []
    end = time.monotonic() + timeout
    while selector.get_map() and time.monotonic() < end:
        for key, _ in selector.select(max(0.0, end - time.monotonic())):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                continue
            lifetimes.append(time.monotonic() - key.data)
            selector.unregister(sock)
            sock.close()  # type: ignore[union-attr]
    for key in list(selector.get_map().values()):
        lifetimes.append(float("inf"))
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()
    return lifetimes


def flood_lines(daemon: DaemonProcess) -> list[str]:
    """Log lines about the flood: our throttled events, and anything on stderr."""
    ours = [json.dumps(line) for line in daemon.lines if line.get("event") in FLOOD_EVENTS]
    return ours + daemon.stderr


def run_flood(daemon: DaemonProcess, count: int) -> dict[str, Any]:
    """Flood the daemon with `count` idle or half-sent connections while probing /healthz; the
    figures."""
    ensure_fds(count)
    wait_healthy(daemon)
    fds_before = open_fds(daemon)
    probe = HealthProbe(daemon.url("/healthz"))
    time.sleep(0.3)
    began = time.monotonic()
    opened = flood(daemon.port, count)
    opening = time.monotonic() - began
    lifetimes = wait_closed(opened, HEADER_TIMEOUT + 8)
    time.sleep(0.5)
    slowest = probe.stop()
    time.sleep(0.3)
    return {
        "connections": count,
        "cap": daemon.events("http.listening")[0]["max_connections"],
        "opening_s": round(opening, 2),
        "healthz_max_s": round(slowest, 3),
        "healthz_probes": len(probe.latencies),
        "healthz_failures": probe.failures[:3],
        "longest_open_s": round(max(lifetimes), 2),
        "closed_at_once": sum(1 for t in lifetimes if t < 1),
        "log_lines": flood_lines(daemon),
        "fds_before": fds_before,
        "fds_after": open_fds(daemon),
    }


def check_flood(figures: dict[str, Any]) -> None:
    """What issue 13 asks of a flood."""
    print(json.dumps({k: v for k, v in figures.items() if k != "log_lines"}))
    print("\n".join(figures["log_lines"]))
    assert not figures["healthz_failures"], figures["healthz_failures"]
    assert figures["healthz_max_s"] < 1.0
    assert figures["longest_open_s"] <= HEADER_TIMEOUT + 1.5, "closed within the header timeout"
    assert len(figures["log_lines"]) <= 3
    assert not any("open files" in line for line in figures["log_lines"])
    assert figures["fds_after"] <= figures["fds_before"] + 8, "every flood socket released"
