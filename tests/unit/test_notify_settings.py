"""`notify` in retention.yaml: each sink checked once, every error naming file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from retention.config.notify_settings import DEFAULT_EVENTS
from retention.config.settings import load_settings
from retention.errors import ConfigError
from retention.notify.notifier import Notifier

POSTGRES = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "postgres"
PROVIDER = "providers:\n  fw:\n    base_url: http://127.0.0.1:9/v1\n    api_key_env: FW_KEY\n"


def _load(tmp_path: Path, notify: str, audit: str = "") -> object:
    """Settings of a config whose `notify` section is `notify`."""
    path = tmp_path / "retention.yaml"
    path.write_text(PROVIDER + audit + notify)
    return load_settings(path)


def _error(tmp_path: Path, notify: str) -> str:
    """The message a bad `notify` section is refused with."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, notify)
    return str(caught.value)


def test_sinks_get_defaults_and_a_spool_beside_the_audit_file(tmp_path: Path) -> None:
    """A webhook and a syslog sink without `events` get the defaults; the webhook's spool is
    in the audit file's folder; its name hides the URL's path and query."""
    settings = _load(
        tmp_path,
        "notify:\n"
        "  - webhook: https://hooks.example.com/services/T0/B0/s3cr3t?k=v\n"
        "  - syslog: unix:/dev/log\n"
        "    facility: local3\n"
        "    format: bsd\n",
        audit="audit:\n  file: trail/audit.jsonl\n",
    )
    webhook, syslog = settings.notify  # type: ignore[attr-defined]
    assert webhook.events == syslog.events == DEFAULT_EVENTS
    assert webhook.spool_file.parent == tmp_path / "trail"
    assert webhook.spool_file.name.startswith("notify-")
    assert "s3cr3t" not in webhook.name and webhook.name.startswith("https://hooks.example.com#")
    assert (syslog.name, syslog.facility, syslog.format) == ("unix:/dev/log", "local3", "bsd")


def test_without_an_audit_file_the_spool_goes_beside_the_sqlite_ledger_or_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `audit.file: ""` the spool defaults to the SQLite ledger's folder; on PostgreSQL
    to $STATE_DIRECTORY (its first folder); never to the folder of retention.yaml."""
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    hook = "notify:\n  - webhook: https://h.example/x\n"
    sqlite = _load(tmp_path, hook, audit='database_url: sqlite:///db/r.db\naudit:\n  file: ""\n')
    assert sqlite.notify[0].spool_file.parent == tmp_path / "db"  # type: ignore[attr-defined]
    postgres = 'database_url: postgresql://u@db.example/r\naudit:\n  file: ""\n'
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/retention:/var/lib/other")
    state = _load(tmp_path, hook, audit=postgres)
    assert state.notify[0].spool_file.parent == Path("/var/lib/retention")  # type: ignore[attr-defined]


def test_without_a_writable_default_a_webhook_must_name_its_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL with no audit file and no $STATE_DIRECTORY (the Kubernetes variant), a
    webhook without `spool_file` is refused naming the key; one with it loads, and a syslog
    sink needs none."""
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    postgres = 'database_url: postgresql://u@db.example/r\naudit:\n  file: ""\n'
    with pytest.raises(ConfigError) as caught:
        _load(
            tmp_path,
            "notify:\n  - syslog: unix:/dev/log\n  - webhook: https://h.example/x\n",
            postgres,
        )
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'retention.yaml'}:10: notify[1].spool_file: required")
    assert "$STATE_DIRECTORY" in message
    named = _load(
        tmp_path,
        "notify:\n  - webhook: https://h.example/x\n    spool_file: /var/spool/r/hook.jsonl\n",
        postgres,
    )
    assert named.notify[0].spool_file == Path("/var/spool/r/hook.jsonl")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        ("notify:\n  - webhook: http://hooks.example.com/x\n", ":6: notify[0].webhook: http://"),
        ("notify:\n  - webhook: https://u:p@h.example/x\n", "notify[0].webhook: credentials"),
        ("notify:\n  - {webhook: 'https://h/x', syslog: 'udp://h:1'}\n", "exactly one of"),
        ("notify:\n  - {syslog: 'tcp://h:1'}\n", "notify[0].syslog: expected udp://"),
        ("notify:\n  - {syslog: 'unix:dev/log'}\n", "absolute socket path"),
        ("notify:\n  - {syslog: 'udp://h:1', facility: mail2}\n", "notify[0].facility"),
        ("notify:\n  - {syslog: 'udp://h:1', events: [respons.failed]}\n", "matches no event"),
        ("notify:\n  - {syslog: 'udp://h:1', events: []}\n", "at least one event"),
        ("notify:\n  - {syslog: 'udp://h:1', token_env: T}\n", "notify[0].token_env: unknown"),
        ("notify:\n  - {webhook: 'https://h/x', token_env: 'abc def'}\n", "not a value"),
        ("notify:\n  - {webhook: 'https://h/x', token_env: A, token_file: f}\n", "not both"),
        ("notify:\n  - {webhook: 'https://h/x', timeout: 2m}\n", "notify[0].timeout: at most"),
        ("notify:\n  - {webhook: 'https://h/x', retry_interval: 9s, retry_max: 3s}\n", "retry_max"),
        ("notify:\n  - {syslog: 'udp://h:1'}\n  - {syslog: 'udp://h:1'}\n", ":7: notify[1]: this"),
        ("notify: {webhook: 'https://h/x'}\n", "notify: expected a list"),
        (
            "notify:\n  - {webhook: 'https://h/x', spool_file: s}\n"
            "  - {webhook: 'https://h/y', spool_file: s}\n",
            ":7: notify[1].spool_file: another webhook",
        ),
    ],
)
def test_a_bad_sink_is_refused_naming_file_line_and_key(
    tmp_path: Path, notify: str, expected: str
) -> None:
    """Each mistake is one ConfigError (exit 2) naming the file, the line and the key."""
    message = _error(tmp_path, notify)
    assert message.startswith(str(tmp_path / "retention.yaml")) and expected in message


def test_a_token_that_cannot_be_read_stops_start_up_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset token variable, and a token file open to others, are ConfigErrors (exit 2)
    when the notifier is built; the message names the key and file, never a token."""
    monkeypatch.delenv("HOOK_TOKEN", raising=False)
    settings = _load(
        tmp_path, "notify:\n  - webhook: https://h.example/x\n    token_env: HOOK_TOKEN\n"
    )
    with pytest.raises(ConfigError, match=r"retention.yaml:6: notify\[0\].token_env: .*HOOK_TOKEN"):
        Notifier(settings.notify)  # type: ignore[attr-defined]
    token = tmp_path / "hook.token"
    token.write_text("token-value-never-shown")
    token.chmod(0o644)
    settings = _load(
        tmp_path, "notify:\n  - webhook: https://h.example/x\n    token_file: hook.token\n"
    )
    with pytest.raises(ConfigError) as caught:
        Notifier(settings.notify)  # type: ignore[attr-defined]
    assert "notify[0].token_file" in str(caught.value) and "hook.token" in str(caught.value)
    assert "token-value-never-shown" not in str(caught.value)
    token.chmod(0o600)
    notifier = Notifier(settings.notify)  # type: ignore[attr-defined]
    assert notifier.sinks[0].settings.token() == "token-value-never-shown"
    notifier.close()


def test_the_postgres_variants_example_spools_on_a_writable_volume_of_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/kubernetes/postgres: its retention.yaml with the `notify` example uncommented
    loads, and the webhook's spool is on a volume the daemon's container mounts read-write,
    not under the read-only /etc/retention; without its spool_file it is refused."""
    monkeypatch.delenv("RETENTION_DATABASE_URL", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    text = (POSTGRES / "config" / "retention.yaml").read_text()
    text = re.sub(r"^database_password_file:.*\n", "", text, flags=re.M)  # only in the pod
    example = re.search(r"^# notify:\n(?:#   .*\n)+", text, flags=re.M)
    assert example, "the notify example is gone from the postgres retention.yaml"
    text = text.replace(example.group(), re.sub(r"^# ", "", example.group(), flags=re.M))
    (tmp_path / "retention.yaml").write_text(text)
    spool = load_settings(tmp_path / "retention.yaml").notify[0].spool_file
    assert spool is not None
    pod = yaml.safe_load((POSTGRES / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "retention")
    mount = next(m for m in container["volumeMounts"] if spool.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume and not mount.get("readOnly")
    (tmp_path / "retention.yaml").write_text(re.sub(r".*spool_file:.*\n", "", text))
    with pytest.raises(ConfigError, match=r"notify\[0\]\.spool_file: required"):
        load_settings(tmp_path / "retention.yaml")
