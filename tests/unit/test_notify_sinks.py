"""Notification messages and sinks on real sockets: what a message holds (and never holds),
syslog's two formats, a unix socket that comes back, a webhook's full queue and refusals."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from retention.config.notify_settings import NotifySettings
from retention.core.vocabulary import Notice
from retention.notify.message import from_notice, from_record, severity
from retention.notify.notifier import Notifier
from retention.notify.syslog import SyslogSink
from retention.notify.webhook import WebhookSink
from retention.redaction import register_secret
from tests.notify_receivers import Webhook, wait_for

# the event's time: five minutes ago, one microsecond past the second (never a fixed date)
MOMENT = datetime.now(UTC).replace(microsecond=1) - timedelta(minutes=5)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
RECORD = {
    "event": "response.failed",
    "ts": f"{MOMENT:%Y-%m-%dT%H:%M:%S}.000001Z",
    "actor": {"host": "box", "pid": 7},
    "chain": "main",
    "seq": 12,
    "prev_hash": "0" * 64,
    "hash": "ab" * 32,
    "response_id": "resp_1",
    "provider": "fireworks",
    "policy": "pii",
    "http_status": 400,
    "error": "HTTP 400",
    "details": {"lag_s": 3},
}


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A listening webhook receiver."""
    receiver = Webhook().start()
    yield receiver
    receiver.stop()


def _settings(tmp_path: Path, **fields: object) -> NotifySettings:
    """A webhook sink's settings with a spool in `tmp_path` and 1 s retries."""
    from datetime import timedelta

    return NotifySettings(
        spool_file=tmp_path / "notify.spool.jsonl",
        retry_interval=timedelta(seconds=1),
        retry_max=timedelta(seconds=1),
        **fields,  # type: ignore[arg-type]
    )


def test_a_record_message_carries_the_trail_fields_and_its_hash_as_key() -> None:
    """The message of an audit record: its fields, the host, a severity, and the record's
    hash as the idempotency key; never the previous hash or the actor's pid."""
    message = from_record(RECORD)
    assert message["idempotency_key"] == "ab" * 32
    assert (message["event"], message["seq"], message["response_id"]) == (
        "response.failed",
        12,
        "resp_1",
    )
    assert (message["host"], message["severity"], message["source"]) == ("box", "err", "audit")
    assert "prev_hash" not in message and "actor" not in message


def test_a_notice_is_redacted_and_each_has_its_own_key() -> None:
    """A logged fault's message has no chain or seq, its error redacted of known secrets, and
    a key of its own each time."""
    register_secret("sk-notice-secret-123")
    one = from_notice(Notice.SWEEP_CRASHED, error="boom with sk-notice-secret-123", path="/x")
    two = from_notice(Notice.SWEEP_CRASHED, error="boom")
    assert one["chain"] is None and one["seq"] is None and one["details"] == {"path": "/x"}
    assert "sk-notice-secret-123" not in json.dumps(one) and "[redacted]" in one["error"]
    assert one["idempotency_key"] != two["idempotency_key"]
    assert [severity(e) for e in ("sweep.crashed", "provider.unreachable", "response.deleted")] == [
        "err",
        "warning",
        "info",
    ]


def test_syslog_formats() -> None:
    """RFC 5424 by default (PRI, version, the event's time, MSGID the event, JSON body);
    `format: bsd` gives the classic line; `details` is left out of an oversized datagram."""
    rfc = SyslogSink(NotifySettings(syslog="udp://127.0.0.1:9", facility="local0"))
    data = rfc.format(from_record(RECORD)).decode()
    header, body = data.split(" - ", 1)
    head, ts, _host, app, _pid, msgid = header.split(" ")
    assert (head, ts, app, msgid) == (
        "<131>1",  # local0 (16) * 8 + err (3); version 1
        f"{MOMENT:%Y-%m-%dT%H:%M:%S}.000001Z",
        "retention",
        "response.failed",
    )
    assert json.loads(body)["response_id"] == "resp_1"
    bsd = SyslogSink(NotifySettings(syslog="udp://127.0.0.1:9", format="bsd"))
    line = bsd.format(from_record(RECORD)).decode()
    stamp = f"{MONTHS[MOMENT.month - 1]} {MOMENT.day:2d} {MOMENT:%H:%M:%S}"  # "Nov  5 08:00:00"
    assert line.startswith(f"<27>{stamp} ") and " retention[" in line
    big = {**RECORD, "details": {"text": "x" * 5000}}
    shrunk = json.loads(rfc.format(from_record(big)).decode().split(" - ", 1)[1])
    assert shrunk["details"] is None and shrunk["details_left_out"] is True


def test_a_unix_syslog_socket_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    """Messages reach a datagram socket; after the receiver is replaced (syslog restarted),
    the sink reconnects and the next message arrives; while it is gone, one is counted lost."""
    path = tmp_path / "log.sock"

    def listen() -> socket.socket:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(str(path))
        receiver.settimeout(5)
        return receiver

    receiver = listen()
    sink = SyslogSink(NotifySettings(syslog=f"unix:{path}"))
    sink.start()
    try:
        sink.offer(from_record(RECORD))
        assert b"response.failed" in receiver.recv(65536)
        receiver.close()
        path.unlink()
        sink.offer(from_record(RECORD))
        assert wait_for(lambda: sink.dropped == 1, 5)
        receiver = listen()
        sink.offer(from_record({**RECORD, "seq": 13}))
        assert b'"seq":13' in receiver.recv(65536)
    finally:
        sink.close(2)
        receiver.close()
    assert (sink.sent, sink.dropped) == (2, 1)


def test_a_full_queue_goes_to_the_spool_in_order(tmp_path: Path, webhook: Webhook) -> None:
    """Offered faster than its worker runs (a queue of 2, offered before it starts), every
    notification still arrives, once, in the order offered."""
    sink = WebhookSink(_settings(tmp_path, webhook=webhook.url), capacity=2)
    for seq in range(1, 11):
        sink.offer(from_record({**RECORD, "seq": seq, "hash": f"{seq:064x}"}))
    assert sink.waiting() == 10  # spooled by the offering thread as the queue filled, or queued
    sink.start()
    try:
        assert wait_for(lambda: len(webhook.received) == 10, 5)
    finally:
        sink.close(2)
    assert [b["seq"] for b in webhook.received] == list(range(1, 11))
    assert (sink.sent, sink.dropped, sink.waiting()) == (10, 0, 0)


def test_a_refused_notification_is_dropped_and_the_rest_go_on(
    tmp_path: Path, webhook: Webhook
) -> None:
    """A 422 drops that notification (counted, logged) instead of blocking the others."""
    webhook.status = 422
    sink = WebhookSink(_settings(tmp_path, webhook=webhook.url))
    sink.start()
    try:
        sink.offer(from_record(RECORD))
        assert wait_for(lambda: sink.dropped == 1, 5)
        webhook.status = 200
        sink.offer(from_record({**RECORD, "seq": 13}))
        assert wait_for(lambda: len(webhook.received) == 1, 5)
    finally:
        sink.close(2)
    assert webhook.received[0]["seq"] == 13 and sink.waiting() == 0


def test_the_notifier_passes_each_sink_what_it_wants(tmp_path: Path, webhook: Webhook) -> None:
    """Globs choose: the default set takes `response.failed` and `sweep.crashed`, not
    `response.deleted`; a sink's own globs take what they match."""
    notifier = Notifier(
        [
            _settings(tmp_path, webhook=webhook.url),
            _settings(tmp_path / "b", webhook=webhook.url + "2", events=("response.d*",)),
        ]
    )
    assert notifier.wants("response.deleted") and notifier.wants("audit.file_diverged")
    assert not notifier.wants("response.recorded")
    first, second = notifier.sinks
    assert first.wants("sweep.crashed") and not first.wants("response.deleted")
    assert second.wants("response.deleted") and not second.wants("response.failed")
    notifier.close()


def test_a_torn_spool_tail_does_not_spin_the_worker(tmp_path: Path, webhook: Webhook) -> None:
    """A spool ending in a line a crash tore (no newline) is nothing to send: the worker
    sleeps instead of looping (little CPU), flush settles at once, and the next
    notification goes out after it (the torn line is skipped)."""
    settings = _settings(tmp_path, webhook=webhook.url)
    assert settings.spool_file is not None
    settings.spool_file.write_bytes(b'{"event":"response.failed","idempotency_key":"a"')
    settings.spool_file.chmod(0o600)
    sink = WebhookSink(settings)
    sink.start()
    try:
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.2  # spinning took the whole half second
        started = time.monotonic()
        assert sink.flush(1) and time.monotonic() - started < 0.2
        sink.offer(from_record(RECORD))
        assert wait_for(lambda: len(webhook.received) == 1, 5)
    finally:
        sink.close(2)
    assert webhook.received[0]["seq"] == 12 and sink.waiting() == 0


def test_a_redirect_drops_the_notification_and_the_rest_go_on(
    tmp_path: Path, webhook: Webhook
) -> None:
    """A 3xx is never followed (it could take the token elsewhere) nor retried forever: that
    notification is dropped, with an error naming the status, and the next one is sent."""
    webhook.status = 308
    sink = WebhookSink(_settings(tmp_path, webhook=webhook.url))
    with capture_logs() as logs:
        sink.start()
        try:
            sink.offer(from_record(RECORD))
            assert wait_for(lambda: sink.dropped == 1, 5)
            webhook.status = 200
            sink.offer(from_record({**RECORD, "seq": 13}))
            assert wait_for(lambda: len(webhook.received) == 1, 5)
        finally:
            sink.close(2)
    assert webhook.received[0]["seq"] == 13 and (sink.sent, sink.failed) == (1, 1)
    refused = [line for line in logs if line["event"] == "notify.refused"]
    assert len(refused) == 1 and refused[0]["http_status"] == 308
    assert refused[0]["log_level"] == "error" and "redirect" in refused[0]["hint"]
