"""Issue 5's discovery: 250 listed responses enrolled under their policies; incremental."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from retention.standin.flavours import FLAVOURS
from tests.helpers import FLAVOR, cli, seed, standin_requests, write_config


def _listing_pages(url: str) -> int:
    """How many listing pages the stand-in served so far."""
    return sum(
        1
        for r in standin_requests(url)
        if r["method"] == "GET" and r["path"].endswith("/responses")
    )


@pytest.mark.skipif(
    not FLAVOURS[FLAVOR].lists_responses, reason=f"{FLAVOR} lists no stored responses"
)
def test_discover_enrols_everything_listed_then_only_what_is_new(
    workdir: Path, standin_process: str
) -> None:
    """250 enrolled under the policy their metadata selects; one more costs at most 2 pages."""
    url = standin_process
    write_config(workdir, url)
    now = int(time.time())
    seed(
        url,
        [
            {
                "id": f"L{i:03d}",
                "created_at": now - 3600 - i * 60,
                "model": "accounts/acme/models/chat",
                "metadata": {"data_class": "pii"} if i % 5 == 0 else {},
            }
            for i in range(250)
        ],
    )
    result = cli("discover", "-o", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["enrolled"] == 250
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert len(rows) == 250
    policies = {r["response_id"]: r["policy"] for r in rows}
    assert policies["L000"] == "pii" and policies["L001"] == "default"
    assert sum(p == "pii" for p in policies.values()) == 50
    assert all(r["deadline_basis"] == "created_at" for r in rows)

    before = _listing_pages(url)
    seed(url, [{"id": "L_new", "created_at": now, "model": "accounts/acme/models/chat"}])
    second = json.loads(cli("discover", "-o", "json", cwd=workdir).stdout)[0]
    assert second["enrolled"] == 1
    assert _listing_pages(url) - before <= 2
    status = json.loads(cli("status", "-o", "json", cwd=workdir).stdout)
    assert status["coverage"]["fireworks"]["tracked"] == 251


def test_a_provider_without_a_listing_says_so(workdir: Path) -> None:
    """An OpenAI-compatible server with no listing: discovery explains, exit 1, nothing lost."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", "--flavor", "openai"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        (workdir / "policies.yaml").write_text("version: 1\ndefault: {ttl: 30d}\n")
        (workdir / "retention.yaml").write_text(
            f"providers:\n  oai:\n    kind: openai\n    base_url: {url}\n"
            "    api_key_env: FW_TEST_KEY\n"
        )
        result = cli("discover", cwd=workdir)
        assert result.returncode == 1
        assert "has no listing of stored responses" in result.stderr
    finally:
        proc.terminate()
        proc.wait(10)
