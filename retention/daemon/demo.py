"""`retention demo`: the whole cycle against a local stand-in, in under a minute, offline.

An app creates responses and a conversation at the stand-in and sends their IDs to the daemon's
ingest API; the daemon deletes each when its short TTL passes (the conversation items first);
the audit trail is verified at the end.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from retention import logs
from retention.audit.verifier import Anchors, verify_records
from retention.config.settings import Settings, load_settings
from retention.core.times import utcnow
from retention.core.vocabulary import CLOSING
from retention.daemon.service import Daemon
from retention.evidence.signing_key import Signer
from retention.evidence.trailfile import iter_records
from retention.ledger import queries
from retention.ledger.ledger import Ledger
from retention.services.open_ledger import open_ledger
from retention.services.policies_in_force import policies_in_force
from retention.standin import StandIn

POLICIES = """\
version: 1
default: {ttl: 30d}
policies:
  - name: pii
    match: {metadata: {data_class: pii}}
    ttl: 3s
  - name: evals
    match: {model: "accounts/fireworks/models/*-eval"}
    ttl: 6s
  - name: chats
    match: {object: conversation}
    ttl: 4s
    ttl_from: last_activity
holds:
  - name: litigation-2026-113
    match: {metadata: {matter: "2026-113"}}
"""
RESPONSES = [
    {"model": "accounts/acme/models/support", "metadata": {"data_class": "pii"}},
    {"model": "accounts/acme/models/support", "metadata": {"data_class": "pii"}},
    {"model": "accounts/fireworks/models/llama-eval", "metadata": {}},
    {"model": "accounts/fireworks/models/qwen-eval", "metadata": {}},
    {"model": "accounts/acme/models/support", "metadata": {"team": "search"}},
    {
        "model": "accounts/acme/models/support",
        "metadata": {"data_class": "pii", "matter": "2026-113"},
    },
]
CONVERSATION_ITEMS = 6
EXPECTED_GONE = 5  # two pii, two evals, the conversation


def _config(workdir: Path, base_url: str) -> Path:
    """Write the demo's retention.yaml and policies.yaml."""
    (workdir / "policies.yaml").write_text(POLICIES)
    path = workdir / "retention.yaml"
    path.write_text(
        "database_url: sqlite:///retention.db\n"
        "providers:\n  fireworks:\n"
        f"    base_url: {base_url}\n"
        "    api_key_env: RETENTION_DEMO_API_KEY\n"
        "    account_id: demo-account\n"
        "sweep:\n  interval: 1s\n"
        "audit:\n  file: audit.jsonl\n"
        "server:\n  listen: 127.0.0.1:0\n  ingest_token_env: RETENTION_DEMO_INGEST_TOKEN\n"
    )
    return path


async def run_demo(directory: Path | None, *, timeout: int, echo: Callable[[str], None]) -> int:
    """Run the demo; 0 when every expired response was deleted and the trail verifies."""
    workdir = directory or Path(tempfile.mkdtemp(prefix="retention-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    key, token = secrets.token_hex(16), secrets.token_hex(16)
    os.environ.update(RETENTION_DEMO_API_KEY=key, RETENTION_DEMO_INGEST_TOKEN=token)
    logs.configure(sys.stderr, level="warning")
    standin = StandIn(api_key=key, account="demo-account")
    await standin.serve()
    echo(f"provider stand-in on {standin.base_url}; files in {workdir}")
    settings = load_settings(_config(workdir, standin.base_url))
    policies = policies_in_force(settings)
    # off the loop, as every ledger call: opening applies the policies (a write)
    ledger = await asyncio.to_thread(open_ledger, settings, policies=policies, log_events=False)
    daemon = Daemon(settings, policies, ledger, clock=utcnow)
    running = asyncio.create_task(daemon.run())
    try:
        ids = await _app_creates_responses(standin, daemon, key, token, echo)
        gone = await _watch(ledger, ids, timeout, echo)
    finally:
        daemon.stop()
        await running
        await asyncio.to_thread(ledger.close)
    return _summary(workdir, settings, standin, gone, echo)


async def _app_creates_responses(
    standin: StandIn, daemon: Daemon, key: str, token: str, echo: Callable[[str], None]
) -> list[str]:
    """What an app does: create stored responses, then hand their IDs to the daemon."""
    while daemon.port is None:
        await asyncio.sleep(0.05)
    headers = {"Authorization": f"Bearer {key}", "x-fireworks-account-id": "demo-account"}
    async with httpx.AsyncClient(trust_env=False) as http:
        created = []
        for body in RESPONSES:
            answer = await http.post(
                f"{standin.base_url}/responses", headers=headers, json={**body, "input": "hello"}
            )
            created.append(answer.json())
        turns = [{"role": "user", "content": f"turn {n}"} for n in range(CONVERSATION_ITEMS)]
        answer = await http.post(
            f"{standin.base_url}/conversations", headers=headers, json={"items": turns}
        )
        conversation = answer.json()["id"]
        records = [
            {
                "id": r["id"],
                "model": r["model"],
                "metadata": r["metadata"],
                "created_at": r["created_at"],
            }
            for r in created
        ] + [{"id": conversation, "object": "conversation"}]
        answer = await http.post(
            f"http://127.0.0.1:{daemon.port}/v1/records",
            json={"records": records},
            headers={"Authorization": f"Bearer {token}"},
        )
    echo(
        f"an app created {len(created)} stored responses and a conversation of "
        f"{CONVERSATION_ITEMS} items, and sent their IDs to the daemon "
        f"(HTTP {answer.status_code}: {answer.json()})"
    )
    return [r["id"] for r in created] + [conversation]


async def _watch(ledger: Ledger, ids: list[str], timeout: int, echo: Callable[[str], None]) -> int:
    """Print each state change until the expired responses are gone (or time runs out)."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(_rows, ledger, ids)
        for row in rows:
            if seen.get(row.response_id) != row.state:
                seen[row.response_id] = row.state
                hold = f", hold {row.hold}" if row.hold else ""
                kind = f" ({row.object})" if row.object != "response" else ""
                echo(f"  {row.response_id}{kind}  {row.state:<8} policy {row.policy}{hold}")
        gone = sum(1 for r in rows if r.state in CLOSING)
        if gone >= EXPECTED_GONE:
            return gone
        await asyncio.sleep(0.25)
    return sum(1 for s in seen.values() if s in CLOSING)


def _rows(ledger: Ledger, ids: list[str]) -> list[Any]:
    """The demo's records."""
    with ledger.read() as conn:
        return [row for rid in ids for row in queries.rows_for_id(conn, rid)]


def _summary(
    workdir: Path, settings: Settings, standin: StandIn, gone: int, echo: Callable[[str], None]
) -> int:
    """Print what happened and where the proof is: the trail verified as an auditor would,
    against the signing key's public half."""
    audit_file, key_file = settings.audit.file, settings.audit.signing_key_file
    assert audit_file is not None and key_file is not None
    key = Signer.from_file(key_file, create=False).public
    verdict = verify_records(iter_records(audit_file), Anchors(key=key))
    records, fault = verdict.records, verdict.fault
    deletes = sum(1 for s in standin.store.seen if s.method == "DELETE")
    left = sum(c["items"] for c in standin.conversations.census().values())
    echo(
        f"deleted {gone} of {len(RESPONSES) + 1} records ({deletes} DELETE requests, the "
        f"conversation's items first: {left} items left at the provider); the held response "
        "and the 30-day one remain"
    )
    echo(
        f"audit trail: {audit_file} ({records} records, hashes, Merkle roots and signatures "
        f"{'sound' if fault is None else 'BROKEN: ' + str(fault)})"
    )
    config = shlex.quote(str(workdir / "retention.yaml"))
    echo(f"ledger: {workdir / 'retention.db'}; try: {_this_command()} -c {config} ls")
    return 0 if gone >= EXPECTED_GONE and fault is None else 1


def _this_command() -> str:
    """How to run this same `retention` from any shell, activated venv or not: the console
    script that started the demo, by its absolute path, else this interpreter with -m."""
    script = Path(sys.argv[0])
    if script.name == "retention" and script.is_file():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m retention"
