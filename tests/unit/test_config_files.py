"""Configuration and policies files: valid examples load, every error names file:line: key."""

from __future__ import annotations

from pathlib import Path

import pytest

from retention.config.policyfile import load_policies, parse_policies
from retention.config.settings import load_settings
from retention.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def test_shipped_examples_load() -> None:
    """config/retention.yaml and config/policies.yaml are valid as shipped."""
    settings = load_settings(CONFIG_DIR / "retention.yaml")
    assert settings.providers["fireworks"].account_id == "my-account"
    assert settings.database_url == f"sqlite:///{CONFIG_DIR / 'retention.db'}"
    rules = load_policies(settings.policies_file)
    assert rules.names == ("pii", "evals", "default")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "version: 1\ndefault:\n  ttl: 30d\npolicies:\n  - name: pii\n    ttl: 3 parsecs\n",
            6,
            "policies[0].ttl: invalid duration",
        ),
        ("version: 1\ndefault:\n  ttl: 30d\n  tll: 2d\n", 4, "default.tll: unknown key"),
        ("version: 1\ndefault: {ttl: 30d}\ndefault: {ttl: 1d}\n", 3, "default: key given twice"),
        ("version: 2\ndefault: {ttl: 30d}\n", 1, "version: unsupported"),
        ("version: 1\n", 1, "default: required"),
        (
            "version: 1\ndefault: {ttl: 30d}\nholds:\n  - name: h\n    ids: [ok, ../x]\n",
            5,
            "holds[0].ids[1]: invalid response ID",
        ),
        ("version: 1\ndefault: {ttl: 30d}\nholds:\n  - name: h\n", 4, "a hold needs"),
        (
            "version: 1\ndefault: {ttl: 30d}\npolicies:\n"
            "  - {name: a, ttl: 1d}\n  - {name: a, ttl: 2d}\n",
            5,
            "used twice",
        ),
        ("version: 1\ndefault: [\n", 3, "invalid YAML"),
        (
            "version: 1\ndefault: {ttl: 30d}\npolicies:\n  - name: x\n    ttl: 1d\n"
            "    match: {metadata: {k: [1]}}\n",
            6,
            "metadata.k: expected a string",
        ),
    ],
)
def test_policy_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    """Each mistake is reported as file:line: key: what is wrong."""
    with pytest.raises(ConfigError) as caught:
        parse_policies(text, "p.yaml")
    assert caught.value.message.startswith(f"p.yaml:{line}: "), caught.value.message
    assert fragment in caught.value.message


def _settings(tmp_path: Path, text: str) -> Path:
    """Write a retention.yaml."""
    path = tmp_path / "retention.yaml"
    path.write_text(text)
    return path


BASE = "providers:\n  fw:\n    api_key_env: K\n"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("    base_url: http://api.example.com/v1\n", "providers.fw.base_url: http:// is allowed"),
        ("    kind: anthropic\n", "providers.fw.kind: expected one of"),
        ("    max_concurrency: 0\n", "max_concurrency: expected an integer"),
        ("    api_key_file: k.txt\n", "exactly one of api_key_env and api_key_file"),
        ("sweep:\n  interval: soon\n", "sweep.interval: invalid duration"),
        ("database_url: mysql://x/y\n", "database_url: unsupported database URL"),
    ],
)
def test_settings_errors_name_the_key(tmp_path: Path, extra: str, fragment: str) -> None:
    """Bad settings are refused with the key that is wrong."""
    with pytest.raises(ConfigError, match=fragment):
        load_settings(_settings(tmp_path, BASE + extra))


def test_providers_are_required(tmp_path: Path) -> None:
    """A config without providers is refused."""
    with pytest.raises(ConfigError, match="providers: required"):
        load_settings(_settings(tmp_path, "sweep: {interval: 1m}\n"))


def test_postgres_urls_use_psycopg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain postgresql:// URL from the environment selects the psycopg 3 driver."""
    monkeypatch.setenv("RETENTION_DATABASE_URL", "postgresql://postgres@127.0.0.1/db")
    settings = load_settings(_settings(tmp_path, BASE))
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1/db"


def test_api_key_errors_never_show_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing key names the variable; a present key is read from the environment."""
    settings = load_settings(_settings(tmp_path, BASE))
    monkeypatch.delenv("K", raising=False)
    with pytest.raises(ConfigError, match="environment variable K is not set"):
        settings.providers["fw"].api_key()
    monkeypatch.setenv("K", "sekret-value")
    assert settings.providers["fw"].api_key() == "sekret-value"
