"""`retention ls` filters by state, provider, policy and when the response was made."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import ago, cli, write_config

POLICIES = """\
version: 1
default: {ttl: 30d}
policies:
  - name: pii
    match: {metadata: {data_class: pii}}
    ttl: 24h
"""
SECOND_PROVIDER = """\
  openai:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key_env: FW_TEST_KEY
"""


def _listed(workdir: Path, *filters: str) -> list[str]:
    """The response IDs `ls` lists with these filters, in its order."""
    result = cli("ls", "-o", "json", *filters, cwd=workdir)
    assert result.returncode == 0, result.stderr
    return [row["response_id"] for row in json.loads(result.stdout)]


def _ledger(workdir: Path) -> None:
    """Five records in one import: two providers, two policies, made 10, 5 and 1 days ago."""
    write_config(
        workdir, "http://127.0.0.1:9/v1", policies=POLICIES, provider_extra=SECOND_PROVIDER
    )
    rows = [
        {"id": "resp_old", "created_at": ago(days=10)},
        {"id": "resp_mid", "created_at": ago(days=5), "metadata": {"data_class": "pii"}},
        {"id": "resp_new", "created_at": ago(days=1)},
        {"id": "resp_oa_old", "provider": "openai", "created_at": ago(days=10)},
        {"id": "resp_oa_new", "provider": "openai", "created_at": ago(days=1)},
    ]
    stdin = "".join(json.dumps(row) + "\n" for row in rows)
    result = cli("import", "-", cwd=workdir, stdin=stdin)
    assert result.returncode == 0, result.stderr


def test_ls_filters_combine(workdir: Path) -> None:
    """--provider, --policy, --since and --until each narrow the list, and they combine."""
    _ledger(workdir)
    assert sorted(_listed(workdir, "--provider", "openai")) == ["resp_oa_new", "resp_oa_old"]
    assert _listed(workdir, "--policy", "pii") == ["resp_mid"]
    assert sorted(_listed(workdir, "--since", ago(days=6))) == [
        "resp_mid",
        "resp_new",
        "resp_oa_new",
    ]
    assert sorted(_listed(workdir, "--until", ago(days=6))) == ["resp_oa_old", "resp_old"]
    assert _listed(
        workdir, "--provider", "fireworks", "--since", ago(days=6), "--until", ago(days=2)
    ) == ["resp_mid"]
    assert _listed(workdir, "--state", "held") == []
    assert len(_listed(workdir, "--state", "pending", "--limit", "2")) == 2


def test_ls_refuses_an_unknown_provider_and_a_bad_time(workdir: Path) -> None:
    """A provider neither configured nor in the ledger, or a time that is not one: exit 2."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    result = cli("ls", "--provider", "fireworkz", cwd=workdir)
    assert result.returncode == 2 and "unknown provider 'fireworkz'" in result.stderr
    result = cli("ls", "--since", "yesterday", cwd=workdir)
    assert result.returncode == 2 and "--since" in result.stderr
    assert "Traceback" not in result.stderr
