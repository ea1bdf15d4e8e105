"""Shared helpers for tests: run the CLI as a user does, write configs, read the stand-in."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The provider the stand-in plays in this run (`RETENTION_TEST_FLAVOR`, .ci/compat runs each):
# the tests that meet the provider run against each flavour's ways (standin/flavours.py), with
# the provider configured as its users would (Llama Stack is an OpenAI-compatible server).
FLAVOR = os.environ.get("RETENTION_TEST_FLAVOR", "fireworks")
ACCOUNT = "acme" if FLAVOR == "fireworks" else None  # the account header is Fireworks' own
# the provider kind its users configure for each server the stand-in plays (Llama Stack is an
# OpenAI-compatible server)
KINDS = {"fireworks": "fireworks", "openai": "openai", "azure": "azure", "llamastack": "openai"}
# the options of a stand-in started as its own process, playing this run's flavour
STANDIN_ARGS = ["--flavor", FLAVOR, *(["--account", ACCOUNT] if ACCOUNT else [])]

POLICIES = """\
version: 1
default:
  ttl: 30d
policies:
  - name: pii
    match: {metadata: {data_class: pii}}
    ttl: 24h
  - name: evals
    match: {provider: fireworks, model: "accounts/fireworks/models/*"}
    ttl: 7d
holds:
  - name: case-2026-113
    ids: [resp_held]
    match: {metadata: {matter: "2026-113"}}
"""


def ago(**delta: float) -> str:
    """RFC 3339 text of the moment `delta` before now: the clock CLI subprocesses act at."""
    moment = datetime.now(UTC) - timedelta(**delta)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# long expired under every policy the tests use, whatever today's date is
LONG_AGO = ago(days=400)


def write_config(
    directory: Path,
    base_url: str,
    *,
    extra: str = "",
    policies: str = POLICIES,
    provider_extra: str = "",
    kind: str | None = None,
) -> Path:
    """A retention.yaml and policies.yaml in `directory` pointing at `base_url` (the
    provider of `kind`, else as the run's flavour is configured)."""
    kind = kind or KINDS.get(FLAVOR, "openai")
    (directory / "policies.yaml").write_text(policies)
    config = directory / "retention.yaml"
    config.write_text(
        "providers:\n"
        "  fireworks:\n"
        f"    kind: {kind}\n"
        f"    base_url: {base_url}\n"
        "    api_key_env: FW_TEST_KEY\n"
        f"{'    account_id: acme' if ACCOUNT and kind == 'fireworks' else ''}\n"
        "    max_concurrency: 8\n"
        f"{provider_extra}"
        f"{extra}"
    )
    return config


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment commands run with: no RETENTION_ variable of ours, the test key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    return {**env, "FW_TEST_KEY": "test-key", **(extra or {})}


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m retention ARGS` in `cwd` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=user_env(env),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


@contextmanager
def standin_playing(flavor: str) -> Iterator[str]:
    """The stand-in as its own process playing `flavor` (`--flavor`); yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", "--flavor", flavor],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


def standin_root(base_url: str) -> str:
    """The stand-in's own address, where its control routes are (`/_standin/...`), from the
    base URL of the API it plays (`/v1`, or Azure's `/openai/v1`)."""
    return base_url.rsplit("/v1", 1)[0].removesuffix("/openai")


def standin_requests(base_url: str) -> list[dict[str, Any]]:
    """Every request the stand-in has answered."""
    root = standin_root(base_url)
    with urllib.request.urlopen(f"{root}/_standin/requests", timeout=10) as answer:
        return json.load(answer)["requests"]


def seed(base_url: str, items: list[dict[str, Any]]) -> None:
    """Create responses in the stand-in."""
    root = standin_root(base_url)
    request = urllib.request.Request(
        f"{root}/_standin/seed", method="POST", data=json.dumps({"responses": items}).encode()
    )
    urllib.request.urlopen(request, timeout=10).read()


def auditor_verify(path: Path) -> int:
    """The recipe of docs/evidence.md, as an auditor would write it; returns the records checked."""
    heads: dict[str, str] = {}
    count = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        body = {k: v for k, v in record.items() if k != "hash"}
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        assert digest == record["hash"], f"seq {record['seq']}: hash mismatch"
        assert record["prev_hash"] == heads.get(record["chain"], "0" * 64), record["seq"]
        heads[record["chain"]] = record["hash"]
        count += 1
    return count
