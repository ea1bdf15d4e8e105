"""Notifications as operators get them: `retention run` and `retention sweep` send the
failures they commit to a webhook (token from a 0600 file) and to syslog over UDP."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retention.config.settings import load_settings
from retention.core.record_input import NewRecord
from retention.services.open_ledger import open_ledger
from retention.services.policies_in_force import policies_in_force
from retention.services.recording import enrol
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import cli, seed, write_config
from tests.notify_receivers import SyslogUdp, Webhook, wait_for

TOKEN = "notify-token-from-a-file-7781"
# a second account on the same stand-in whose key is refused: provider.auth_failed
ELSEWHERE = (
    "  elsewhere:\n"
    "    kind: fireworks\n"
    "    base_url: {url}\n"
    "    api_key_env: FW_WRONG_KEY\n"
    "    account_id: acme\n"
)


@pytest.fixture
def receivers() -> Iterator[tuple[Webhook, SyslogUdp]]:
    """A listening webhook and a syslog UDP socket."""
    webhook, syslog = Webhook().start(), SyslogUdp()
    yield webhook, syslog
    webhook.stop()
    syslog.close()


def _prepare(workdir: Path, url: str, webhook: Webhook, syslog: SyslogUdp, extra: str = "") -> None:
    """A config with both providers and both sinks; a ledger with two expired IDs the stand-in
    keeps when asked to delete them (response.failed), and one of the refused account."""
    (workdir / "hook.token").write_text(TOKEN)
    (workdir / "hook.token").chmod(0o600)
    notify = (
        "notify:\n"
        f"  - webhook: {webhook.url}\n"
        "    token_file: hook.token\n"
        "    retry_interval: 1s\n"
        "    retry_max: 2s\n"
        f"  - syslog: {syslog.address}\n"
    )
    write_config(workdir, url, provider_extra=ELSEWHERE.format(url=url), extra=notify + extra)
    root = url.rsplit("/v1", 1)[0]
    knobs = urllib.request.Request(
        f"{root}/_standin/knobs", data=json.dumps({"keep_on_delete_rate": 1.0}).encode()
    )
    urllib.request.urlopen(knobs, timeout=10).read()
    seed(url, [{"id": "kept1"}, {"id": "kept2"}])
    settings = load_settings(workdir / "retention.yaml")
    policies = policies_in_force(settings)
    ledger = open_ledger(settings, policies=policies)  # in-process: a CLI start costs a second
    try:
        created = datetime.now(UTC) - timedelta(days=400)
        records = [
            NewRecord("kept1", created_at=created),
            NewRecord("kept2", created_at=created),
            NewRecord("there1", provider="elsewhere", created_at=created),
        ]
        enrol(ledger, settings, policies, records)
    finally:
        ledger.close()


def test_the_daemon_notifies_the_failures_of_its_first_sweep(
    workdir: Path, standin_process: str, receivers: tuple[Webhook, SyslogUdp]
) -> None:
    """`retention run`: both `response.failed` and `provider.auth_failed` reach the webhook
    and syslog within its first sweeps; /metrics counts them and shows the last sweep and the
    refused provider's probe; the token is in no log line."""
    webhook, syslog = receivers
    _prepare(
        workdir,
        standin_process,
        webhook,
        syslog,
        "sweep:\n  interval: 1s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n",
    )
    daemon = DaemonProcess(workdir, {"FW_WRONG_KEY": "wrong-key"})
    try:

        def arrived() -> bool:
            names = webhook.events()
            return names.count("response.failed") == 2 and "provider.auth_failed" in names

        assert wait_for(arrived, 15), webhook.events()
        assert wait_for(lambda: {m["msgid"] for m in syslog.messages()} >= set(webhook.events()), 5)
        status, metrics = daemon.request("/metrics")
        assert status == 200
        sent = [line for line in metrics.splitlines() if line.startswith("retention_notify_sent")]
        assert len(sent) == 2 and all(float(line.split()[-1]) >= 3 for line in sent)
        assert 'retention_provider_probe_ok{provider="elsewhere"} 0.0' in metrics
        last = next(
            line for line in metrics.splitlines() if line.startswith("retention_last_sweep_")
        )
        assert float(last.split()[-1]) > 0
    finally:
        assert daemon.stop() == 0
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in webhook.headers)
    logged = json.dumps(daemon.lines) + "".join(daemon.stderr)
    assert TOKEN not in logged and webhook.url not in logged


def test_a_one_shot_sweep_sends_before_it_exits_or_leaves_a_spool(
    workdir: Path, standin_process: str, receivers: tuple[Webhook, SyslogUdp]
) -> None:
    """`retention sweep` with the webhook down exits within a few seconds and leaves the
    events in the spool; the next `retention sweep`, with it up, delivers them first, then its
    own, each once."""
    webhook, syslog = receivers
    webhook.stop()
    _prepare(workdir, standin_process, webhook, syslog)
    first = cli("sweep", cwd=workdir, env={"FW_WRONG_KEY": "wrong-key"})
    assert first.returncode == 1, first.stderr
    assert webhook.received == [] and len(syslog.datagrams) == 3
    spool = next(workdir.glob("notify-*.spool.jsonl"))
    assert spool.stat().st_mode & 0o777 == 0o600 and len(spool.read_text().splitlines()) == 3
    webhook.start()
    second = cli("sweep", cwd=workdir, env={"FW_WRONG_KEY": "wrong-key"})
    assert second.returncode == 1, second.stderr
    names = webhook.events()
    assert names.count("response.failed") == 2 and names.count("provider.auth_failed") == 2
    assert len({b["idempotency_key"] for b in webhook.received}) == 4
    seqs = [b["seq"] for b in webhook.received]
    assert seqs == sorted(seqs)
    assert spool.read_text() == ""
