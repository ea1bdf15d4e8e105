"""Configuration and policies files: valid examples load, every error names file:line: key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from retention.config.policyfile import load_policies, parse_policies
from retention.config.settings import WitnessSettings, load_settings
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


WITNESSES = (
    "audit:\n"
    "  witness:\n"
    "    - dir: witness-copies\n"
    "    - url: https://witness.example/v1/checkpoints\n"
    "      token_env: WITNESS_TOKEN\n"
    "    - {url: 'http://127.0.0.1:9/cp', spool_file: /var/spool/w.jsonl}\n"
)


def test_witnesses_are_read_with_paths_from_the_config_folder(tmp_path: Path) -> None:
    """Relative folders count from the config's folder; a URL gets a spool named by its hash."""
    witness = load_settings(_settings(tmp_path, BASE + WITNESSES)).audit.witness
    digest = hashlib.sha256(b"https://witness.example/v1/checkpoints").hexdigest()[:12]
    assert witness == (
        WitnessSettings(dir=tmp_path.resolve() / "witness-copies"),
        WitnessSettings(
            url="https://witness.example/v1/checkpoints",
            token_env="WITNESS_TOKEN",
            spool_file=tmp_path.resolve() / f"witness-{digest}.spool.jsonl",
        ),
        WitnessSettings(url="http://127.0.0.1:9/cp", spool_file=Path("/var/spool/w.jsonl")),
    )
    assert load_settings(_settings(tmp_path, BASE)).audit.witness == ()


@pytest.mark.parametrize(
    ("entries", "line", "fragment"),
    [
        ("    - {dir: a, url: 'https://w.example/'}\n", 6, "audit.witness[0]: give exactly one"),
        ("    - {}\n", 6, "audit.witness[0]: give exactly one of dir and url"),
        ("    - dir: a\n    - dri: b\n", 7, "audit.witness[1].dri: unknown key"),
        ("    - dir: a\n      token_env: T\n", 7, "witness[0].token_env: only a url witness"),
        ("    - url: http://w.example/cp\n", 6, "witness[0].url: http:// is allowed only to"),
        ("    - url: ftp://w.example/cp\n", 6, "witness[0].url: expected an https:// URL"),
        ("    - url: https://u:pw@w.example/\n", 6, "url: credentials do not go in the URL"),
        ("    - url: https://w.example/\n      token_env: s3cr-et\n", 7, "not a value"),
        ("    - dir: a\n    - dir: a\n", 7, "audit.witness[1]: this witness is listed twice"),
        ("    dir: a\n", 5, "audit.witness: expected a list"),
        ("    - a\n", 6, "audit.witness[0]: expected a mapping"),
    ],
)
def test_witness_errors_name_file_line_and_key(
    tmp_path: Path, entries: str, line: int, fragment: str
) -> None:
    """Each mistake in `audit.witness` is reported as file:line: key: what is wrong."""
    path = _settings(tmp_path, BASE + "audit:\n  witness:\n" + entries)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.message.startswith(f"{path}:{line}: "), caught.value.message
    assert fragment in caught.value.message
    assert "pw@" not in caught.value.message and "s3cr-et" not in caught.value.message
