"""Helpers of the compatibility suite: the Llama Stack under test, the product's files
pointing at it, requests made as an app makes them, and the figures each test reports."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from compat.llamastack import MODEL
from tests.helpers import cli

KEYS = {"key-alice": "alice", "key-bob": "bob"}
ALICE, BOB, REFUSED = "key-alice", "key-bob", "key-nobody"
PROVIDER = "llamastack"
KEY_ENV = "LLAMASTACK_API_KEY"
FIGURES: list[str] = []  # printed at the end of the run (conftest.pytest_terminal_summary)

POLICIES = """\
version: 1
default:
  ttl: 30d
policies:
  - name: due
    match: {metadata: {batch: due}}
    ttl: 1s
  - name: chats
    match: {object: conversation}
    ttl: 1s
  - name: completions
    match: {object: chat.completion}
    ttl: 1s
"""


@dataclass(frozen=True)
class LlamaStack:
    """The server under test: its OpenAI base URL and the folder of its databases."""

    base_url: str  # http://127.0.0.1:PORT/v1
    workdir: Path

    @property
    def root(self) -> str:
        """The server's address without `/v1`."""
        return self.base_url.removesuffix("/v1")

    def client(self, key: str = ALICE) -> httpx.Client:
        """An HTTP client on the base URL with one key."""
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60, trust_env=False)

    def status(self, path: str, key: str = ALICE) -> int:
        """The status a GET of `path` (under the base URL) answers."""
        with self.client(key) as http:
            return http.get(path).status_code

    def statuses(self, paths: list[str], key: str = ALICE) -> dict[str, int]:
        """The status each GET answers, by path."""
        with self.client(key) as http:
            return {path: http.get(path).status_code for path in paths}

    def sql(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the server's own SQL store (sql_store.db)."""
        uri = f"file:{self.workdir / 'sql_store.db'}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            return conn.execute(query, args).fetchall()


def figure(test: str, **numbers: object) -> None:
    """Report one test's figures in the run's final summary."""
    FIGURES.append(f"{test}: " + ", ".join(f"{key}={value}" for key, value in numbers.items()))


def make_responses(
    server: LlamaStack, count: int, *, threads: int = 8, tag: str = "filler"
) -> list[dict[str, Any]]:
    """Create `count` stored responses as alice, `threads` at a time; their bodies."""

    def one(n: int) -> dict[str, Any]:
        """One stored response."""
        with server.client() as http:
            answer = http.post("/responses", json={"model": MODEL, "input": f"{tag} {n}"})
        answer.raise_for_status()
        return dict(answer.json())

    with ThreadPoolExecutor(threads) as pool:
        made = list(pool.map(one, range(count)))
    stored = server.statuses([f"/responses/{item['id']}" for item in made])
    assert set(stored.values()) == {200}, "Llama Stack answered for responses it did not store"
    return made


def burst_responses(server: LlamaStack, count: int) -> list[dict[str, Any]]:
    """Create `count` stored responses as alice, all asked at once; their bodies."""

    async def burst() -> list[dict[str, Any]]:
        """Every request in flight together."""
        headers = {"Authorization": f"Bearer {ALICE}"}
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(
            base_url=server.base_url, headers=headers, timeout=120, trust_env=False, limits=limits
        ) as http:

            async def one(n: int) -> dict[str, Any]:
                """One stored response."""
                answer = await http.post("/responses", json={"model": MODEL, "input": f"b {n}"})
                answer.raise_for_status()
                return dict(answer.json())

            return list(await asyncio.gather(*(one(n) for n in range(count))))

    return asyncio.run(burst())


def delete_at_server(server: LlamaStack, response_id: str) -> None:
    """Delete one response at the server, as alice."""
    with server.client() as http:
        http.delete(f"/responses/{response_id}").raise_for_status()


def configure(
    workdir: Path,
    base_url: str,
    *,
    policies: str = POLICIES,
    extra: str = "",
) -> Path:
    """retention.yaml (provider `llamastack`, kind openai, key in $LLAMASTACK_API_KEY,
    verify_after_delete) and policies.yaml in `workdir`."""
    (workdir / "policies.yaml").write_text(policies)
    config = workdir / "retention.yaml"
    config.write_text(
        "providers:\n"
        f"  {PROVIDER}:\n"
        "    kind: openai\n"
        f"    base_url: {base_url}\n"
        f"    api_key_env: {KEY_ENV}\n"
        "    verify_after_delete: true\n"
        "discover:\n"
        "  interval: 0s\n"
        f"{extra}"
    )
    return config


def retention(
    workdir: Path, *args: str, key: str = ALICE, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`retention ARGS` in `workdir` as a user runs it, with `key` as the provider's key."""
    return cli(*args, cwd=workdir, env={KEY_ENV: key}, stdin=stdin)


def rows(workdir: Path, *args: str) -> dict[str, dict[str, Any]]:
    """The ledger's records as `retention ls -o json` shows them, by ID."""
    done = retention(workdir, "ls", "-o", "json", *args)
    assert done.returncode == 0, done.stderr
    return {row["response_id"]: row for row in json.loads(done.stdout)}


def events(workdir: Path, name: str) -> list[dict[str, Any]]:
    """The ledger's audit events of one name, in order."""
    with sqlite3.connect(workdir / "retention.db") as conn:
        lines = conn.execute(
            "SELECT line FROM audit_events WHERE event = ? ORDER BY seq", (name,)
        ).fetchall()
    return [json.loads(line) for (line,) in lines]


def verify_trail(workdir: Path) -> subprocess.CompletedProcess[str]:
    """`retention audit verify` of the ledger's trail under the key it signs with."""
    pubkey = retention(workdir, "audit", "pubkey")
    assert pubkey.returncode == 0, pubkey.stderr
    (workdir / "audit-signing.pub").write_text(pubkey.stdout)
    return retention(workdir, "audit", "verify", "--pubkey", "audit-signing.pub", "-o", "json")


def warm_up(server: LlamaStack) -> None:
    """One stored response, chat completion and conversation, one at a time, before any test:
    Llama Stack 0.7.3 creates its SQL tables lazily, and requests racing that first creation
    are answered 200 but not stored (`no such table: responses` in its log), which would make
    an ID made by a test `absent` rather than `deleted`."""
    with server.client() as http:
        made = http.post("/responses", json={"model": MODEL, "input": "warm up"})
        made.raise_for_status()
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "warm up"}]}
        http.post("/chat/completions", json={**chat, "store": True}).raise_for_status()
        item = {"type": "message", "role": "user", "content": "warm up"}
        http.post("/conversations", json={"items": [item]}).raise_for_status()
        deadline = time.monotonic() + 10
        while http.get(f"/responses/{made.json()['id']}").status_code != 200:
            assert time.monotonic() < deadline, "Llama Stack does not store responses"
            time.sleep(0.1)
