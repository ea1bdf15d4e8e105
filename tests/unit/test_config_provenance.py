"""Where settings come from: the database password from its own file, and which of the file and
an environment variable won where both give a value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from retention.config.overrides import Override, find_overrides, shown_url
from retention.config.settings import Settings, load_settings
from retention.errors import ConfigError
from retention.redaction import redact
from tests.helpers import write_config

URL = "postgresql://retention@db.example:5432/ret"


def _settings(tmp_path: Path, extra: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings of a retention.yaml whose lines from 8 on are `extra`, no variables set."""
    for name in ("RETENTION_DATABASE_URL", "RETENTION_AUDIT_CHAIN", "RETENTION_INGEST_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return load_settings(write_config(tmp_path, "https://fw.test/v1", extra=extra))


def _password(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    """A password file holding `text`."""
    path = tmp_path / "database-password"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_password_file_goes_into_the_url_and_into_no_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password with URL-special characters, read from its file (the line break at its end
    dropped), reaches the driver whole and is registered for redaction."""
    _password(tmp_path, "p@ss:w/rd%25#\n")
    extra = f"database_url: {URL}\ndatabase_password_file: database-password\n"
    settings = _settings(tmp_path, extra, monkeypatch)
    url = make_url(settings.database_url)
    assert (url.password, url.username, url.host) == ("p@ss:w/rd%25#", "retention", "db.example")
    assert redact("connect with p@ss:w/rd%25#") == "connect with [redacted]"


@pytest.mark.parametrize(
    ("extra", "mode", "said"),
    [
        (f"database_url: {URL}\n", 0o644, "is open to group or others"),
        ("database_url: postgresql://u:pw@db/x\n", 0o600, "holds a password already"),
        ("database_url: sqlite:///ledger.db\n", 0o600, "only a postgresql:// database_url"),
    ],
)
def test_a_password_file_that_cannot_be_used_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, mode: int, said: str
) -> None:
    """A password file open to others, a URL that has a password, a SQLite ledger: exit 2,
    naming file, line and key, never the password."""
    _password(tmp_path, "hunter2\n", mode)
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, extra + "database_password_file: database-password\n", monkeypatch)
    message = caught.value.message
    assert message.startswith(f"{tmp_path / 'retention.yaml'}:9: database_password_file: ")
    assert said in message and "hunter2" not in message


def test_each_variable_that_meets_a_file_key_is_found() -> None:
    """$RETENTION_DATABASE_URL over `database_url` (the file's value shown without password),
    `audit.chain` over $RETENTION_AUDIT_CHAIN, `ingest_token_file` over the token variable
    (never shown); a variable the file does not contradict is no override."""
    node = {
        "database_url": "postgresql://app:secret@db/ret?password=also",
        "audit": {"chain": "main"},
        "server": {"ingest_token_file": "token"},
    }
    environ = {
        "RETENTION_DATABASE_URL": "sqlite:///x.db",
        "RETENTION_AUDIT_CHAIN": "pod-1",
        "RETENTION_INGEST_TOKEN": "t0ken",
    }
    assert find_overrides(node, environ) == (
        Override("database_url", "RETENTION_DATABASE_URL", "env", "postgresql://app:***@db/ret"),
        Override("audit.chain", "RETENTION_AUDIT_CHAIN", "file", "pod-1"),
        Override("server.ingest_token_file", "RETENTION_INGEST_TOKEN", "file", None),
    )
    assert find_overrides({"audit": {"chain": "main"}}, {"RETENTION_AUDIT_CHAIN": "main"}) == ()
    assert find_overrides(None, environ) == ()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://u:pw@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u@h/d?sslmode=require&password=x", "postgresql://u@h/d"),
        ("postgresql://u:p@ss@h/d", "postgresql://u:***@h/d"),
        ("sqlite:////var/lib/retention/retention.db", "sqlite:////var/lib/retention/retention.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    """The password becomes `***`, the query (where libpq also takes one) and driver go."""
    assert shown_url(url) == shown


def test_a_chain_from_the_variable_that_is_no_name_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$RETENTION_AUDIT_CHAIN holding a pod name with a dot: exit 2 naming the variable."""
    monkeypatch.setenv("RETENTION_AUDIT_CHAIN", "retention.v2-abc")
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, "https://fw.test/v1"))
    assert caught.value.message.startswith("$RETENTION_AUDIT_CHAIN: chain names are")
