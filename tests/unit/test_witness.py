"""Checkpoint witnesses: a real folder and a real HTTP endpoint on 127.0.0.1 that fails and
recovers; publish never raises, what was not taken waits in a 0600 spool and goes first."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from retention.audit.hashchain import GENESIS, canonical, seal
from retention.daemon.metrics import Metrics
from retention.evidence.witness import Witnesses, WitnessSettings
from retention.ledger.audit_file import AuditSink
from retention.ledger.db import make_engine
from retention.ledger.ledger import Ledger

TOKEN = "witness-token-4f9a2c"


def checkpoint(seq: int, chain: str = "main") -> dict[str, Any]:
    """A sealed `audit.checkpoint` record of `chain` at `seq`."""
    body = {
        "event": "audit.checkpoint",
        "ts": f"2026-11-25T12:{seq:02d}:00Z",
        "details": {"covers_seq": seq - 1, "signature": f"sig-{seq}"},
    }
    return seal(body, chain=chain, seq=seq, prev_hash=GENESIS)


def mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


class WitnessServer:
    """A witness endpoint on 127.0.0.1 answering `status`; it can be stopped and restarted."""

    def __init__(self) -> None:
        self.status = 200
        self.taken: list[bytes] = []  # bodies answered with a 2xx, in order
        self.requests: list[tuple[dict[str, str], bytes]] = []  # every request
        self.port = 0
        self._server: HTTPServer | None = None

    @property
    def url(self) -> str:
        """Where checkpoints are POSTed."""
        return f"http://127.0.0.1:{self.port}/checkpoints"

    def start(self) -> WitnessServer:
        """Serve from a background thread (on the same port as before, after a stop)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.requests.append((dict(self.headers), body))
                if 200 <= owner.status < 300:
                    owner.taken.append(body)
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop answering: connections are refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def server() -> Iterator[WitnessServer]:
    """A running witness endpoint."""
    running = WitnessServer().start()
    yield running
    running.stop()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """The witness token, in $WITNESS_TOKEN."""
    monkeypatch.setenv("WITNESS_TOKEN", TOKEN)
    return TOKEN


def url_witness(server: WitnessServer, tmp_path: Path, **kw: Any) -> Witnesses:
    """Witnesses with one URL witness on `server`, spooling to tmp_path/spool.jsonl."""
    settings = WitnessSettings(
        url=server.url, token_env="WITNESS_TOKEN", spool_file=tmp_path / "spool.jsonl"
    )
    return Witnesses([settings], **kw)


def test_folder_witness_appends_one_file_per_chain(tmp_path: Path) -> None:
    """Each checkpoint is appended to DIR/<chain>.checkpoints.jsonl (0600, folder made 0700)."""
    folder = tmp_path / "witness"
    witnesses = Witnesses([WitnessSettings(dir=folder)])
    records = [checkpoint(1), checkpoint(1, "eu"), checkpoint(2), checkpoint(2, "eu")]
    for record in records:
        witnesses.publish(record)
    main, eu = folder / "main.checkpoints.jsonl", folder / "eu.checkpoints.jsonl"
    assert main.read_text() == "".join(canonical(r) + "\n" for r in records[0::2])
    assert eu.read_text() == "".join(canonical(r) + "\n" for r in records[1::2])
    assert (mode(folder), mode(main), mode(eu)) == (0o700, 0o600, 0o600)
    assert witnesses.sent == {f"dir:{folder}": 4} and witnesses.failed == {f"dir:{folder}": 0}


def test_folder_witness_keeps_what_it_missed_and_writes_it_first(tmp_path: Path) -> None:
    """While the folder cannot be made, checkpoints wait in memory; then they land in order."""
    folder = tmp_path / "witness"
    folder.write_text("a file where the folder should be")
    witnesses = Witnesses([WitnessSettings(dir=folder)])
    name = f"dir:{folder}"
    with capture_logs() as logs:
        witnesses.publish(checkpoint(1))
        witnesses.publish(checkpoint(2))
    assert [e["event"] for e in logs] == ["audit.witness_failed"] * 2
    assert witnesses.failed[name] == 2 and witnesses.spooled(name) == 2
    folder.unlink()
    witnesses.publish(checkpoint(3))
    lines = (folder / "main.checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert witnesses.spooled(name) == 0 and witnesses.sent[name] == 3


def test_a_chain_that_is_not_a_plain_name_is_refused(tmp_path: Path) -> None:
    """A chain name becomes a file name, so `../x` is refused, counted, and writes nothing."""
    witnesses = Witnesses([WitnessSettings(dir=tmp_path / "w")])
    with capture_logs() as logs:
        witnesses.publish(checkpoint(1, "../escape"))
    assert logs[0]["event"] == "audit.witness_failed"
    assert witnesses.failed[f"dir:{tmp_path / 'w'}"] == 1
    assert list(tmp_path.iterdir()) == []


def test_url_witness_posts_the_canonical_line_with_the_bearer_token(
    server: WitnessServer, tmp_path: Path, token: str
) -> None:
    """The POST carries the checkpoint's canonical JSON and `Authorization: Bearer <token>`."""
    witnesses = url_witness(server, tmp_path)
    record = checkpoint(1)
    witnesses.publish(record)
    headers, body = server.requests[0]
    assert body.decode() == canonical(record)
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == f"Bearer {token}"
    assert witnesses.sent == {server.url: 1} and not (tmp_path / "spool.jsonl").exists()


def test_no_authorization_header_when_the_variable_is_empty(
    server: WitnessServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset or empty token variable sends no Authorization header at all."""
    monkeypatch.setenv("WITNESS_TOKEN", "")
    url_witness(server, tmp_path).publish(checkpoint(1))
    assert "Authorization" not in server.requests[0][0]


def test_refused_checkpoints_are_spooled_and_sent_first_on_recovery(
    server: WitnessServer, tmp_path: Path, token: str
) -> None:
    """While the witness answers 500 the lines wait in a 0600 spool; once it answers 2xx they
    arrive before the new one, oldest first, and the spool empties."""
    witnesses = url_witness(server, tmp_path)
    spool = tmp_path / "spool.jsonl"
    server.status = 500
    witnesses.publish(checkpoint(1))
    witnesses.publish(checkpoint(2))
    assert spool.read_text() == canonical(checkpoint(1)) + "\n" + canonical(checkpoint(2)) + "\n"
    assert mode(spool) == 0o600 and witnesses.spooled(server.url) == 2
    assert witnesses.failed[server.url] == 2 and len(server.requests) == 2  # stops at a failure
    server.status = 201
    with capture_logs() as logs:
        witnesses.publish(checkpoint(3))
    assert [json.loads(body)["seq"] for body in server.taken] == [1, 2, 3]
    assert not spool.exists() and witnesses.spooled(server.url) == 0
    assert witnesses.sent[server.url] == 3
    assert logs == [
        {
            "event": "audit.witness_caught_up",
            "witness": server.url,
            "delivered": 2,
            "log_level": "info",
        }
    ]


def test_a_down_witness_is_caught_up_by_retry_and_across_restarts(
    server: WitnessServer, tmp_path: Path, token: str
) -> None:
    """Connection refused spools the line; a new Witnesses (a restarted daemon) finds the spool
    and `retry_spooled` delivers it once the endpoint is back."""
    server.stop()
    with capture_logs() as logs:
        url_witness(server, tmp_path).publish(checkpoint(1))
    assert logs[0]["event"] == "audit.witness_failed" and "ConnectError" in logs[0]["error"]
    restarted = url_witness(server, tmp_path)
    assert restarted.spooled(server.url) == 1
    server.start()
    restarted.retry_spooled()
    assert [json.loads(body)["seq"] for body in server.taken] == [1]
    assert restarted.spooled(server.url) == 0 and restarted.sent[server.url] == 1


def test_the_token_is_in_no_log_line(server: WitnessServer, tmp_path: Path, token: str) -> None:
    """Refusals and refused connections are logged with the witness name, never the token."""
    witnesses = url_witness(server, tmp_path)
    with capture_logs() as logs:
        server.status = 401
        witnesses.publish(checkpoint(1))
        server.stop()
        witnesses.publish(checkpoint(2))
    assert logs[0]["error"] == "HTTP 401"
    assert len(logs) == 2 and all(e["witness"] == server.url for e in logs)
    assert token not in repr(logs)


def test_the_spool_keeps_only_the_newest_lines(
    server: WitnessServer, tmp_path: Path, token: str
) -> None:
    """Past its bound the spool drops the oldest lines, with a warning saying how many."""
    server.stop()
    witnesses = url_witness(server, tmp_path, max_spooled=3)
    with capture_logs() as logs:
        for seq in range(1, 6):
            witnesses.publish(checkpoint(seq))
    lines = (tmp_path / "spool.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 4, 5]
    full = [e for e in logs if e["event"] == "audit.witness_spool_full"]
    assert [e["dropped"] for e in full] == [1, 1]


def test_publish_never_raises_on_a_record_it_cannot_encode(tmp_path: Path) -> None:
    """A record that is not JSON is counted as a failure for every witness, not raised."""
    witnesses = Witnesses(
        [WitnessSettings(dir=tmp_path / "a"), WitnessSettings(dir=tmp_path / "b")]
    )
    witnesses.publish({"chain": "main", "details": {1, 2}})
    assert list(witnesses.failed.values()) == [1, 1]


def test_witness_names_hide_credentials_and_queries() -> None:
    """A URL witness is named by its URL without user, password or query."""
    settings = WitnessSettings(url="https://user:pw@witness.example:8443/cp?key=1")
    assert settings.name == "https://witness.example:8443/cp"


def test_metrics_expose_witness_counts(
    server: WitnessServer, tmp_path: Path, token: str, now: datetime
) -> None:
    """/metrics carries checkpoints sent and failed per witness, and what each has spooled."""
    ledger = Ledger(make_engine(f"sqlite:///{tmp_path}/l.db"), AuditSink(None), chain="main")
    metrics = Metrics(ledger, lambda: now)
    witnesses = url_witness(server, tmp_path)
    metrics.watch_witnesses(witnesses)
    witnesses.publish(checkpoint(1))
    server.status = 503
    witnesses.publish(checkpoint(2))
    text = generate_latest(metrics.registry).decode()
    samples = {
        (sample.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("witness") == server.url
    }
    assert samples == {
        ("retention_witness_checkpoints_total", "sent"): 1.0,
        ("retention_witness_checkpoints_total", "failed"): 1.0,
        ("retention_witness_spooled", None): 1.0,
    }
