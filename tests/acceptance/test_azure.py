"""Azure OpenAI (`kind: azure`): the key travels in an `api-key` header, against the stand-in
in its Azure flavour, which takes no other; sent as a bearer token it is refused at the probe,
with a hint, before any DELETE."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ago, cli, seed, standin_playing, standin_requests

IDS = [f"resp_az{i}" for i in range(5)]


@pytest.fixture
def azure_url() -> Iterator[str]:
    """The stand-in playing Azure OpenAI (`/openai/v1`, the key only in `api-key`)."""
    with standin_playing("azure") as url:
        yield url


def _configure(workdir: Path, base_url: str, extra: str = "") -> None:
    """An Azure provider at `base_url`, due IDs to import, a one-hour TTL."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault:\n  ttl: 1h\n")
    (workdir / "retention.yaml").write_text(
        "providers:\n"
        "  azure:\n"
        "    kind: azure\n"
        f"    base_url: {base_url}\n"
        "    api_key_env: FW_TEST_KEY\n"
        "    verify_after_delete: true\n"
        f"{extra}"
    )
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": ago(hours=2)}) + "\n" for i in IDS)
    )


def test_a_sweep_deletes_with_the_api_key_header(workdir: Path, azure_url: str) -> None:
    """The key in `api-key`: every due ID is deleted and verified, the probe on /models."""
    assert azure_url.endswith("/openai/v1")
    seed(azure_url, [{"id": i} for i in IDS])
    _configure(workdir, azure_url)
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert {r["state"] for r in rows} == {"deleted"} and len(rows) == len(IDS)
    paths = [(r["method"], r["path"], r["status"]) for r in standin_requests(azure_url)]
    assert ("GET", "/openai/v1/models", 200) in paths
    assert sum(1 for m, _, s in paths if m == "DELETE" and s == 200) == len(IDS)


def test_the_key_as_a_bearer_token_is_refused_at_the_probe_with_a_hint(
    workdir: Path, azure_url: str
) -> None:
    """`auth: bearer` against Azure's key: exit 1, provider.auth_failed says to send the key
    as `api-key`, no DELETE, every ID pending with no attempt charged."""
    seed(azure_url, [{"id": i} for i in IDS])
    _configure(workdir, azure_url, extra="    auth: bearer\n")
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 1
    assert "provider.auth_failed" in result.stderr and "`api-key` header" in result.stderr
    assert "Traceback" not in result.stderr
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert {(r["state"], r["attempts"]) for r in rows} == {("pending", 0)}
    assert not [r for r in standin_requests(azure_url) if r["method"] == "DELETE"]


def test_kind_azure_without_a_base_url_is_one_line_and_exit_2(workdir: Path) -> None:
    """Azure has no default base URL: the config error names the file, line and field."""
    (workdir / "policies.yaml").write_text("version: 1\ndefault:\n  ttl: 1h\n")
    (workdir / "retention.yaml").write_text(
        "providers:\n  azure:\n    kind: azure\n    api_key_env: FW_TEST_KEY\n"
    )
    result = cli("doctor", cwd=workdir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "retention.yaml:3" in lines[0] and "base_url" in lines[0], lines
