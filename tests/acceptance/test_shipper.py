"""Issue 13, item 9: the capture shipper against an ingest endpoint that refuses items, fails,
shuts its door or is away, over real sockets (the real shipper, a scripted server on loopback).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
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
