"""Notifications from a real sweep against the stand-in: a webhook (real http.server) and a
syslog UDP socket receive `response.failed` and `provider.auth_failed`, each once, also when
the webhook is down for the sweep and ten seconds after it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text

from retention.core.times import utcnow
from retention.core.vocabulary import Event
from retention.daemon.service import Daemon
from retention.errors import UsageError
from retention.notify.notifier import Notifier
from retention.standin import StandIn
from tests.integration.conftest import Env
from tests.notify_receivers import SyslogUdp, Webhook, wait_for

TOKEN = "hook-token-5150-secret"
# a second account on the same stand-in whose key is refused: 401 at the sweep's probe
ELSEWHERE = (
    "  elsewhere:\n"
    "    kind: fireworks\n"
    "    base_url: {url}\n"
    "    api_key_env: FW_WRONG_KEY\n"
    "    account_id: acme\n"
)


@pytest.fixture
def syslog() -> Iterator[SyslogUdp]:
    """A syslog receiver on a real UDP socket."""
    receiver = SyslogUdp()
    yield receiver
    receiver.close()


@pytest.fixture
def failing_env(
    make_env: Callable[..., Env],
    standin: StandIn,
    webhook: Webhook,
    syslog: SyslogUdp,
    monkeypatch: pytest.MonkeyPatch,
) -> Env:
    """A ledger whose next sweep fails two IDs of `fireworks` (200 `deleted: false`) and is
    refused (401) by `elsewhere`; notify: the test's webhook (1 s retries, at most 2 s apart)
    and the syslog socket."""
    monkeypatch.setenv("FW_WRONG_KEY", "wrong-key")
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    notify = (
        "notify:\n"
        f"  - webhook: {webhook.url}\n"
        "    token_env: HOOK_TOKEN\n"
        "    retry_interval: 1s\n"
        "    retry_max: 2s\n"
        f"  - syslog: {syslog.address}\n"
    )
    env = make_env(provider_extra=ELSEWHERE.format(url=standin.base_url), extra=notify)
    for rid in ("kept1", "kept2"):
        standin.store.create({"id": rid})
    standin.knobs.update({"keep_on_delete_rate": 1.0})
    env.record("kept1", "kept2")
    env.record("there1", provider="elsewhere")
    return env


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A webhook receiver, not listening yet."""
    receiver = Webhook()
    yield receiver
    receiver.stop()


def _expected(env: Env) -> Counter[str]:
    """The default events the ledger holds, by name (what the receivers must get, once each)."""
    with env.ledger.read() as conn:
        names = conn.execute(
            text(
                "SELECT event FROM audit_events"
                " WHERE event IN ('response.failed', 'provider.auth_failed')"
            )
        ).scalars()
        return Counter(names)


def test_webhook_and_syslog_get_the_failures_of_one_sweep(
    failing_env: Env, webhook: Webhook, syslog: SyslogUdp
) -> None:
    """One sweep's `response.failed` (two) and `provider.auth_failed` reach the webhook, with
    the bearer token and an idempotency key, and the syslog socket at severity err."""
    webhook.start()
    notifier = Notifier(failing_env.settings.notify)
    notifier.start(failing_env.ledger)
    try:
        failing_env.sweep()
        expected = _expected(failing_env)
        assert expected == {"response.failed": 2, "provider.auth_failed": 1}
        assert wait_for(lambda: Counter(webhook.events()) == expected, 5), webhook.events()
        assert wait_for(lambda: len(syslog.datagrams) == 3, 5), syslog.datagrams
    finally:
        notifier.close()
    failed = [b for b in webhook.received if b["event"] == "response.failed"]
    assert {b["response_id"] for b in failed} == {"kept1", "kept2"}
    assert all(b["provider"] == "fireworks" and b["chain"] == "main" for b in failed)
    assert all("not deleted" in b["error"] for b in failed)
    auth = next(b for b in webhook.received if b["event"] == "provider.auth_failed")
    assert auth["provider"] == "elsewhere" and auth["http_status"] == 401
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in webhook.headers)
    keys = [h["Idempotency-Key"] for h in webhook.headers]
    assert keys == [b["idempotency_key"] for b in webhook.received] and len(set(keys)) == 3
    messages = syslog.messages()
    assert Counter(m["msgid"] for m in messages) == expected
    assert {m["pri"] for m in messages} == {3 * 8 + 3}  # facility daemon, severity err
    assert sorted(m["body"]["idempotency_key"] for m in messages) == sorted(keys)


def test_a_webhook_down_for_ten_seconds_gets_each_event_once_in_order(
    failing_env: Env, webhook: Webhook, syslog: SyslogUdp
) -> None:
    """The webhook does not listen during the sweep and for 10 s after it: the events wait
    in the 0600 spool and arrive once it listens, each exactly once, in commit order."""
    notifier = Notifier(failing_env.settings.notify)
    notifier.start(failing_env.ledger)
    try:
        failing_env.sweep()
        expected = _expected(failing_env)
        spool = failing_env.settings.notify[0].spool_file
        assert spool is not None
        assert wait_for(lambda: notifier.figures()[0].failed >= 1, 5)
        assert notifier.figures()[0].waiting == 3
        assert spool.stat().st_mode & 0o777 == 0o600
        assert wait_for(lambda: len(syslog.datagrams) == 3, 5)  # UDP needs no receiver's answer
        time.sleep(10)
        assert webhook.received == []
        webhook.start()
        assert wait_for(lambda: sum(Counter(webhook.events()).values()) >= 3, 10)
        time.sleep(1.2)  # a second try would have come by now: nothing is sent twice
    finally:
        notifier.close()
    assert Counter(webhook.events()) == expected
    assert len({b["idempotency_key"] for b in webhook.received}) == 3
    seqs = [b["seq"] for b in webhook.received]
    assert seqs == sorted(seqs)
    figures = notifier.figures()[0]
    assert (figures.sent, figures.waiting, figures.dropped) == (3, 0, 0)
    assert TOKEN not in spool.read_text() if spool.exists() else True


def test_only_committed_events_are_sent(make_env: Callable[..., Env], webhook: Webhook) -> None:
    """An event of a transaction that rolls back is never sent; the next committed one is."""
    env = make_env(extra=f"notify:\n  - webhook: {webhook.url}\n")
    webhook.start()
    notifier = Notifier(env.settings.notify)
    notifier.start(env.ledger)
    try:
        with pytest.raises(RuntimeError), env.ledger.write() as tx:
            tx.event(Event.RESPONSE_FAILED, response_id="rolled_back", error="x")
            raise RuntimeError("the transaction fails after the event was queued")
        with env.ledger.write() as tx:
            tx.event(Event.RESPONSE_FAILED, response_id="committed", error="y")
        assert wait_for(lambda: len(webhook.received) == 1, 5)
        assert notifier.flush(2)
    finally:
        notifier.close()
    assert [b["response_id"] for b in webhook.received] == ["committed"]


def test_an_audit_file_that_cannot_be_written_is_notified_once_with_a_count(
    make_env: Callable[..., Env], webhook: Webhook
) -> None:
    """Committed lines that do not reach the audit file (a full disk: /dev/full) are an
    `audit.file_write_failed` notification, with the file and the system's words: one for
    the first transaction, and for the twenty after it one with their count, not twenty."""
    env = make_env(extra=f"audit:\n  file: /dev/full\nnotify:\n  - webhook: {webhook.url}\n")
    webhook.start()
    notifier = Notifier(env.settings.notify)
    notifier.start(env.ledger)
    try:
        for _ in range(21):
            with env.ledger.write() as tx:
                tx.event(Event.POLICY_LOADED, details={})
        assert wait_for(lambda: len(webhook.received) == 1, 5), webhook.received
        assert notifier.flush(2) and len(webhook.received) == 1
    finally:
        notifier.close()  # sends the count of those held back
    first, count = webhook.received
    assert (first["event"], first["source"], first["severity"]) == (
        "audit.file_write_failed",
        "log",
        "err",
    )
    assert first["details"]["path"] == "/dev/full" and "space" in first["error"].lower()
    assert first["chain"] is None and first["seq"] is None and "repeated" not in first["details"]
    assert count["event"] == "audit.file_write_failed" and count["error"] == first["error"]
    assert (count["details"]["repeated"], count["details"]["interval_s"]) == (20, 60)


def test_a_crashing_sweep_is_notified_by_the_daemon(
    make_env: Callable[..., Env], webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's sweeps that raise (the API key vanished) are `sweep.crashed`
    notifications with the error, and the daemon stops cleanly with its notifier."""
    env = make_env(
        extra="sweep:\n  interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"
        f"notify:\n  - webhook: {webhook.url}\n"
    )
    webhook.start()

    async def scenario() -> int:
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        running = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.3)
        monkeypatch.delenv("FW_TEST_KEY")  # every sweep from now on fails to read its key
        for _ in range(60):
            if webhook.received:
                break
            await asyncio.sleep(0.05)
        daemon.stop()
        return await running

    assert asyncio.run(scenario()) == 0
    crashed = webhook.received[0]
    assert (crashed["event"], crashed["severity"]) == ("sweep.crashed", "err")
    assert "FW_TEST_KEY" in crashed["error"]
    assert env.ledger.sink.watcher is None  # detached at the stop


def test_a_daemon_that_fails_to_start_closes_its_notifier(
    make_env: Callable[..., Env], webhook: Webhook
) -> None:
    """A start-up step that fails after the notifier started (its port is taken) stops the
    sinks' threads and detaches the notifier from the ledger, as a normal stop does."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = make_env(
            extra=f"server:\n  listen: 127.0.0.1:{port}\nnotify:\n  - webhook: {webhook.url}\n"
        )
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        with pytest.raises(UsageError, match="address already in use"):
            asyncio.run(daemon.run())
    assert daemon.notifier.sinks[0].started and not daemon.notifier.sinks[0].running
    assert env.ledger.sink.watcher is None


def test_a_checkpoint_that_fails_at_the_stop_is_notified(
    make_env: Callable[..., Env], webhook: Webhook
) -> None:
    """The last checkpoint, written as the daemon stops, fails (its key file was spoilt
    meanwhile): `audit.checkpoint_failed` is sent, as from the scheduled checkpoint job, before
    the notifier closes."""
    env = make_env(
        extra="server:\n  listen: 127.0.0.1:0\n"
        f"notify:\n  - webhook: {webhook.url}\n    events: [audit.checkpoint_failed]\n"
    )
    key = env.settings.audit.signing_key_file
    assert key is not None
    webhook.start()

    async def scenario() -> int:
        daemon = Daemon(env.settings, env.policies, env.ledger, clock=utcnow)
        running = asyncio.create_task(daemon.run())
        for _ in range(100):
            if daemon.started:
                break
            await asyncio.sleep(0.02)
        key.write_text("not a key\n")
        daemon.stop()
        return await running

    assert asyncio.run(scenario()) == 0
    assert [b["event"] for b in webhook.received] == ["audit.checkpoint_failed"]
    assert webhook.received[0]["severity"] == "err" and webhook.received[0]["error"]
