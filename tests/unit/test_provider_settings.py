"""The provider section's keys added for probes: storage_period, header-safe key and account."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from retention.config.settings import load_settings
from retention.errors import ConfigError
from tests.helpers import write_config


def test_storage_period_defaults_to_30_days(tmp_path: Path) -> None:
    """Without the key, the provider keeps responses 30 days."""
    settings = load_settings(write_config(tmp_path, "https://fw.test/v1"))
    assert settings.providers["fireworks"].storage_period == timedelta(days=30)


def test_storage_period_is_a_duration(tmp_path: Path) -> None:
    """`storage_period: 7d` is read; `0` is refused with its key."""
    ok = write_config(tmp_path, "https://fw.test/v1", provider_extra="    storage_period: 7d\n")
    assert load_settings(ok).providers["fireworks"].storage_period == timedelta(days=7)
    bad = write_config(tmp_path, "https://fw.test/v1", provider_extra="    storage_period: 0\n")
    with pytest.raises(ConfigError, match="storage_period"):
        load_settings(bad)


def test_key_with_a_line_break_is_refused(tmp_path: Path) -> None:
    """A key file holding two lines cannot go in a header: a ConfigError naming the provider."""
    (tmp_path / "key").write_text("sk-one\nsk-two\n")
    (tmp_path / "key").chmod(0o600)
    config = write_config(tmp_path, "https://fw.test/v1")
    config.write_text(config.read_text().replace("api_key_env: FW_TEST_KEY", "api_key_file: key"))
    provider = load_settings(config).providers["fireworks"]
    with pytest.raises(ConfigError, match="control character") as caught:
        provider.api_key()
    assert "sk-" not in caught.value.message, "the key itself is never shown"


def test_account_with_a_line_break_is_refused(tmp_path: Path) -> None:
    """An account ID is sent as a header too: control characters are refused at load."""
    config = write_config(tmp_path, "https://fw.test/v1")
    config.write_text(config.read_text().replace("account_id: acme", 'account_id: "ac\\r\\nme"'))
    with pytest.raises(ConfigError, match="account_id"):
        load_settings(config)


def test_account_outside_ascii_is_refused_at_load(tmp_path: Path) -> None:
    """A non-ASCII account ID cannot go in a header: refused at load (exit 2), not a crash of
    every sweep."""
    config = write_config(tmp_path, "https://fw.test/v1")
    config.write_text(config.read_text().replace("account_id: acme", "account_id: acmé"))
    with pytest.raises(ConfigError, match="account_id: holds a character that is not ASCII"):
        load_settings(config)


def test_credentials_in_the_base_url_are_refused(tmp_path: Path) -> None:
    """`https://user:pw@host/v1` would reach logs, probe faults and the signed trail: refused,
    without echoing the password in the error."""
    config = write_config(tmp_path, "https://proxyuser:proxypass@gw.test/v1")
    with pytest.raises(ConfigError, match="credentials") as caught:
        load_settings(config)
    assert "proxypass" not in caught.value.message


def test_a_ledger_url_is_named_without_password_or_query() -> None:
    """Errors name a PostgreSQL ledger with neither its password nor `?password=` in sight."""
    from retention.ledger.diagnosis import where

    shown = where("postgresql+psycopg://app:pw@127.0.0.1:1/retention?password=hunter2")
    assert shown == "postgresql://app:***@127.0.0.1:1/retention"


def test_a_silent_host_is_a_connection_failure_on_the_aiohttp_transport() -> None:
    """A connect that times out maps to httpx.ConnectTimeout (the breaker's), not a read timeout
    (which would charge the ID)."""
    import aiohttp
    import httpx

    from retention.provider.transport import _ERRORS

    mapped = next(t for e, t in _ERRORS if isinstance(aiohttp.ConnectionTimeoutError(), e))
    assert mapped is httpx.ConnectTimeout
