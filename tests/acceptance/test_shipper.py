"""Issue 13, item 9: the capture shipper against an ingest endpoint that refuses items, fails,
shuts its door or is away, over real sockets (the real shipper, a scripted server on loopback).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from retention.capture.shipper import Shipper
from tests.acceptance.http_router import free_port

TOKEN = "shipper-token"
Answer = tuple[int, dict[str, Any]]


class Ingest:
    """POST /v1/records on loopback, answering as `script(records, call_no)` says; it keeps
    every request's time, IDs and status, and the IDs it accepted (a 2xx)."""

    def __init__(self, script: Callable[[list[dict[str, Any]], int], Answer], port: int = 0):
        self.calls: list[tuple[float, list[str], int]] = []
        self.accepted: list[str] = []
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                """One ingest request."""
                body = self.rfile.read(int(self.headers["Content-Length"]))
                records = json.loads(body)["records"]
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    status, answer = 401, {"error": "missing or wrong bearer token"}
                else:
                    status, answer = script(records, len(ingest.calls))
                ids = [r["id"] for r in records]
                ingest.calls.append((time.monotonic(), ids, status))
                if 200 <= status < 300:
                    ingest.accepted.extend(ids)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The ingest base URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def accept(records: list[dict[str, Any]], call: int) -> Answer:
    """The daemon's 202, naming as bad every record whose ID starts with `bad`."""
    bad = [
        {"index": i, "error": "id: not a response ID"}
        for i, r in enumerate(records)
        if r["id"].startswith("bad")
    ]
    if bad:
        return 400, {"error": "invalid records; none were accepted", "items": bad}
    return 202, {"accepted": len(records), "duplicates": 0}


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll `condition` until it holds or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def shippers() -> Iterator[list[Shipper]]:
    """Shippers made by a test, closed after it."""
    made: list[Shipper] = []
    yield made
    for shipper in made:
        shipper.close(1)


def _shipper(made: list[Shipper], url: str, spool: Path, **kw: Any) -> Shipper:
    """A real shipper with short backoffs."""
    kw = {"backoff_first": 0.05, "backoff_cap": 0.2, **kw}
    shipper = Shipper(url, TOKEN, spool, **kw)
    made.append(shipper)
    return shipper


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """Capture warnings holding `text`."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "retention.capture" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def test_a_400_drops_only_the_items_it_names(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """Three bad records among 500 cost only themselves, each logged once with the reason."""
    caplog.set_level(logging.INFO, logger="retention.capture")
    ingest = Ingest(accept)
    try:
        shipper = _shipper(shippers, ingest.url, tmp_path / "spool.jsonl")
        ids = [f"resp_{i}" for i in range(497)]
        for i, rid in enumerate(ids):
            shipper.put({"id": rid})
            if i in (3, 200, 400):
                shipper.put({"id": f"bad_{i}"})
        assert wait_until(lambda: len(ingest.accepted) == len(ids) and shipper.queue.empty())
        assert sorted(ingest.accepted) == sorted(ids)
        dropped = _warnings(caplog, "it is dropped")
        assert len(dropped) == 3
        assert all("not a response ID" in line for line in dropped)
        assert shipper.counts["dropped_bad"] == 3
        assert TOKEN not in caplog.text
    finally:
        ingest.close()


def test_a_400_naming_nothing_and_a_413_halve_the_batch(
    tmp_path: Path, shippers: list[Shipper]
) -> None:
    """A 413 above 8 records and a bare 400 for `poison` end with all but `poison` delivered."""

    def picky(records: list[dict[str, Any]], call: int) -> Answer:
        if len(records) > 8:
            return 413, {"error": "too large"}
        if any(r["id"] == "poison" for r in records):
            return 400, {"error": "the body is not JSON"}
        return 202, {"accepted": len(records), "duplicates": 0}

    ingest = Ingest(picky)
    try:
        shipper = _shipper(shippers, ingest.url, tmp_path / "spool.jsonl")
        ids = [f"resp_{i}" for i in range(40)]
        for rid in [*ids[:20], "poison", *ids[20:]]:
            shipper.put({"id": rid})
        assert wait_until(lambda: len(ingest.accepted) == 40)
        time.sleep(0.2)
        assert sorted(ingest.accepted) == sorted(ids)
        assert shipper.counts["dropped_bad"] == 1
    finally:
        ingest.close()


def test_5xx_backs_off_doubling_to_its_cap_and_keeps_every_id(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """Eight 503s: tries spread out to the cap (0.2 s) and no further; one warning; the IDs
    wait in the spool and all arrive once the daemon answers 202."""
    caplog.set_level(logging.INFO, logger="retention.capture")

    def failing(records: list[dict[str, Any]], call: int) -> Answer:
        return (503, {"error": "the ledger is away"}) if call < 8 else accept(records, call)

    ingest = Ingest(failing)
    spool = tmp_path / "spool.jsonl"
    try:
        shipper = _shipper(shippers, ingest.url, spool)
        ids = [f"resp_{i}" for i in range(30)]
        for rid in ids:
            shipper.put({"id": rid})
        assert wait_until(lambda: len(ingest.calls) >= 3)
        assert spool.stat().st_size > 0 and spool.stat().st_mode & 0o777 == 0o600
        assert wait_until(lambda: sorted(ingest.accepted) == sorted(ids))
        times = [t for t, _, _ in ingest.calls]
        gaps = [b - a for a, b in itertools.pairwise(times)][:8]
        assert max(gaps) < 0.2 + 0.1, gaps  # the cap, and scheduling slack
        assert max(gaps[3:]) >= 0.1, gaps  # it did grow: half the cap at least
        assert min(gaps) >= 0.02, gaps  # never a hot loop
        assert wait_until(lambda: spool.stat().st_size == 0)
        assert len(_warnings(caplog, "answered 503")) == 1
    finally:
        ingest.close()


def test_a_wrong_token_and_ingest_off_keep_the_spool_and_warn_once_each(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """401 then 404 keep the IDs (one warning each, however many tries), then they arrive."""
    caplog.set_level(logging.INFO, logger="retention.capture")

    def door(records: list[dict[str, Any]], call: int) -> Answer:
        if call < 4:
            return 401, {"error": "missing or wrong bearer token"}
        if call < 8:
            return 404, {"error": "ingest is off: no token is configured"}
        return accept(records, call)

    ingest = Ingest(door)
    try:
        shipper = _shipper(shippers, ingest.url, tmp_path / "spool.jsonl")
        ids = [f"resp_{i}" for i in range(10)]
        for rid in ids:
            shipper.put({"id": rid})
        assert wait_until(lambda: sorted(ingest.accepted) == sorted(ids))
        assert len(_warnings(caplog, "401")) == 1
        assert len(_warnings(caplog, "404: ingest is off")) == 1
        # the daemon took them before the shipper read its answer: wait for the count too
        assert wait_until(lambda: shipper.counts["sent"] == 10)
        assert shipper.counts == {"sent": 10, "dropped_bad": 0, "dropped_queue_full": 0}
    finally:
        ingest.close()


def test_the_spool_is_bounded_keeps_the_oldest_and_warns_once(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """With the daemon away and a 2,000-byte spool, the first IDs are kept and sent later;
    the rest are counted as dropped, with one warning."""
    caplog.set_level(logging.INFO, logger="retention.capture")
    port = free_port()
    spool = tmp_path / "spool.jsonl"
    shipper = _shipper(shippers, f"http://127.0.0.1:{port}", spool, spool_max_bytes=2000)
    ids = [f"resp_{i:04d}" for i in range(300)]
    for rid in ids:
        shipper.put({"id": rid})
    assert wait_until(lambda: shipper.spool.dropped_total + _lines(spool) == 300)
    kept = _lines(spool)
    assert 0 < kept < 300 and spool.stat().st_size <= 2000
    assert len(_warnings(caplog, "is full")) == 1
    ingest = Ingest(accept, port=port)
    try:
        assert wait_until(lambda: len(ingest.accepted) == kept)
        assert sorted(ingest.accepted) == ids[:kept]
        assert wait_until(lambda: len(_warnings(caplog, "were dropped while it was full")) == 1)
    finally:
        ingest.close()


def test_a_spool_left_open_to_others_is_made_private(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """A 0644 spool left by an older version is made 0600 (with a warning) and sent."""
    caplog.set_level(logging.INFO, logger="retention.capture")
    spool = tmp_path / "spool.jsonl"
    spool.write_text('{"id": "resp_old"}\n')
    os.chmod(spool, 0o644)
    ingest = Ingest(accept)
    try:
        _shipper(shippers, ingest.url, spool)
        assert wait_until(lambda: ingest.accepted == ["resp_old"])
        assert spool.stat().st_mode & 0o777 == 0o600
        assert _warnings(caplog, "made it 0600")
    finally:
        ingest.close()


def _lines(path: Path) -> int:
    """Lines in a file (0 when absent)."""
    return len(path.read_bytes().splitlines()) if path.exists() else 0


class Raw:
    """A server on loopback that reads one request per connection and lets `answer(conn)`
    write what it likes (a body of any size, at any pace); it counts the bytes it got out
    before the client hung up, and the requests."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.requests, self.sent = 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        """Accept until closed; one thread a connection."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        """Read the request (head and body), then answer."""
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            with contextlib.suppress(OSError):
                self.answer(conn)

    def close(self) -> None:
        """Stop accepting (shutdown wakes the thread waiting in accept, so the port is free)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def test_a_400_that_is_not_the_daemons_keeps_every_id(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy's HTML 400 (plain http sent to an https port) is not the daemon naming bad
    records: the IDs stay in the spool, one warning says to check ingest_url, and they arrive
    once the daemon answers. Before, each ID was split off and dropped, one warning each."""
    caplog.set_level(logging.INFO, logger="retention.capture")
    page = b"<html>400 The plain HTTP request was sent to HTTPS port</html>"
    proxy = Raw(
        lambda conn: conn.sendall(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(page)}\r\n\r\n".encode()
            + page
        )
    )
    spool = tmp_path / "spool.jsonl"
    port = int(proxy.url.rsplit(":", 1)[1])
    shipper = _shipper(shippers, proxy.url, spool)
    ids = [f"resp_{i}" for i in range(20)]
    for rid in ids:
        shipper.put({"id": rid})
    assert wait_until(lambda: proxy.requests >= 3 and _lines(spool) == 20)
    assert shipper.counts["dropped_bad"] == 0 and not _warnings(caplog, "it is dropped")
    assert len(_warnings(caplog, "is ingest_url the daemon's base URL")) == 1
    proxy.close()
    ingest = Ingest(accept, port=port)
    try:
        assert wait_until(lambda: sorted(ingest.accepted) == sorted(ids))
    finally:
        ingest.close()


def test_an_answer_of_gigabytes_or_a_byte_a_second_holds_neither_memory_nor_thread(
    tmp_path: Path, shippers: list[Shipper]
) -> None:
    """A 400 of 2 GiB: the shipper reads 1 MiB of it and hangs up (the server gets out a few
    MiB, not 2 GiB; before, it read it all: 3.4 GB in the app for a 1 GB answer), and keeps
    the IDs. A 202 whose body comes a byte at a time: the IDs count as sent once the status is
    in and the body's time (5 s) is up; before, the thread waited as long as the drip lasted."""
    chunk = b" " * (1024 * 1024)

    def gigantic(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2147483648\r\n\r\n")
        for _ in range(2048):
            conn.sendall(chunk)
            huge.sent += len(chunk)

    huge = Raw(gigantic)
    spool = tmp_path / "huge.jsonl"
    shipper = _shipper(shippers, huge.url, spool)
    for i in range(5):
        shipper.put({"id": f"resp_{i}"})
    assert wait_until(lambda: huge.requests >= 2 and _lines(spool) == 5, timeout=20)
    assert huge.sent < 64 * 1024 * 1024, huge.sent
    huge.close()

    def dripping(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            conn.sendall(b" ")
            time.sleep(0.2)

    drip = Raw(dripping)
    shipper = _shipper(shippers, drip.url, tmp_path / "drip.jsonl")
    started = time.monotonic()
    for i in range(5):
        shipper.put({"id": f"resp_{i}"})
    assert wait_until(lambda: shipper.counts["sent"] == 5, timeout=12)
    assert time.monotonic() - started < 8
    drip.close()


def test_the_daemons_reasons_reach_the_log_without_the_token_or_a_forged_line(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture
) -> None:
    """A daemon (or an impostor) whose reason for a refused record echoes the Authorization
    header and holds a line break and terminal escapes: the warning shows `[redacted]`, on
    one line, with no escape character."""
    caplog.set_level(logging.INFO, logger="retention.capture")

    def echoing(records: list[dict[str, Any]], call: int) -> Answer:
        reason = f"token Bearer {TOKEN}\x1b[31m\nretention capture: all IDs sent"
        return 400, {"error": "invalid", "items": [{"index": 0, "error": reason}]}

    ingest = Ingest(echoing)
    try:
        shipper = _shipper(shippers, ingest.url, tmp_path / "spool.jsonl")
        shipper.put({"id": "resp_1"})
        assert wait_until(lambda: shipper.counts["dropped_bad"] == 1)
        (line,) = _warnings(caplog, "it is dropped")
        assert "Bearer [redacted]" in line and TOKEN not in caplog.text
        assert "\n" not in line and "\x1b" not in line
    finally:
        ingest.close()


@pytest.mark.parametrize("kind", ["link", "pipe", "another file"])
def test_a_spool_that_is_not_a_spool_is_left_as_found(
    tmp_path: Path, shippers: list[Shipper], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A spool path that is a symbolic link (to a user's file), a named pipe, or a file whose
    first line is no record (`spool_path` naming the wrong file): with the daemon away, then
    back, the file is never written, emptied or chmodded, nothing waits on the pipe, one
    warning names the spool, and the app's IDs still reach the daemon. Before, a linked or
    wrong file was made 0600, had its lines dropped and was emptied; a pipe hung the thread."""
    caplog.set_level(logging.INFO, logger="retention.capture")
    precious = tmp_path / "notes.txt"
    precious.write_text("my notes\nline two\n")
    precious.chmod(0o644)
    spool = tmp_path / "spool.jsonl"
    if kind == "link":
        spool.symlink_to(precious)
    elif kind == "pipe":
        os.mkfifo(spool, 0o600)
    else:
        spool = precious
    port = free_port()
    shipper = _shipper(shippers, f"http://127.0.0.1:{port}", spool)
    shipper.put({"id": "resp_away"})
    assert wait_until(lambda: bool(_warnings(caplog, "cannot write the spool")))
    ingest = Ingest(accept, port=port)
    try:
        shipper.put({"id": "resp_back"})
        assert wait_until(lambda: "resp_back" in ingest.accepted)
    finally:
        ingest.close()
    assert precious.read_text() == "my notes\nline two\n"
    assert precious.stat().st_mode & 0o777 == 0o644
    assert shipper._thread.is_alive()
