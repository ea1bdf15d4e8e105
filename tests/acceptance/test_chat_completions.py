"""Stored chat completions end to end: an app on the real openai SDK makes chat completions
through `retention.capture`, streamed and not; those made with `store=True` are deleted on
their TTL at a stand-in playing OpenAI, each verified gone; the others are never recorded."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN, wait_healthy
from tests.helpers import cli, standin_playing, standin_root, write_config

pytest.importorskip("openai")

STORED, UNSTORED = 50, 10
POLICIES = """\
version: 1
default:
  ttl: 30d
policies:
  - name: chats
    match: {object: chat.completion}
    ttl: 2s
"""
DAEMON = "sweep:\n  interval: 1s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n"

APP = """
import json, sys
from pathlib import Path
import time
from openai import OpenAI
import retention.capture

base, ingest, spool, token, stored, unstored = sys.argv[1:7]
client = retention.capture.instrument(
    OpenAI(base_url=base, api_key="test-key"),
    ingest_url=ingest, token=token, provider="fireworks", spool_path=spool)
made = {"stored": [], "unstored": []}
for n in range(int(stored) + int(unstored)):
    store = n < int(stored)
    asked = dict(model="m", messages=[{"role": "user", "content": f"hello {n}"}], store=store,
                 metadata={"user_id": f"user-{n}"})
    if n % 2:
        chunks = list(client.chat.completions.create(stream=True, **asked))
        made["stored" if store else "unstored"].append(chunks[0].id)
    else:
        made["stored" if store else "unstored"].append(client.chat.completions.create(**asked).id)
print(json.dumps(made), flush=True)
while Path(spool).exists() and Path(spool).stat().st_size:
    time.sleep(0.05)
"""


@pytest.fixture
def openai_url() -> Iterator[str]:
    """The stand-in playing OpenAI: chat completions made with `store: true` are kept until
    deleted."""
    with standin_playing("openai") as url:
        yield url


def _stored_at(base: str) -> list[str]:
    """The IDs of the chat completions the stand-in still stores."""
    with urllib.request.urlopen(f"{standin_root(base)}/_standin/chat_completions") as answer:
        return list(json.loads(answer.read())["ids"])


def _events(workdir: Path, name: str) -> list[dict[str, Any]]:
    """The ledger's events of one name, in order."""
    with sqlite3.connect(workdir / "retention.db") as conn:
        lines = conn.execute(
            "SELECT line FROM audit_events WHERE event = ? ORDER BY seq", (name,)
        ).fetchall()
    return [json.loads(line) for (line,) in lines]


def test_stored_chat_completions_are_deleted_on_their_ttl_and_verified(
    workdir: Path, openai_url: str
) -> None:
    """50 chat completions with store=True (half streamed) and 10 without: the 50 are recorded
    with their metadata, deleted 2 s after they were made, each verified 404 with its event;
    the 10 never reach the ledger; the trail verifies."""
    write_config(
        workdir,
        openai_url,
        kind="openai",
        extra=DAEMON,
        policies=POLICIES,
        provider_extra="    verify_after_delete: true\n",
    )
    (workdir / "app.py").write_text(APP)
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        wait_healthy(daemon)
        done = subprocess.run(
            [
                sys.executable,
                "app.py",
                openai_url,
                daemon.url(""),
                str(workdir / "spool.jsonl"),
                TOKEN,
                str(STORED),
                str(UNSTORED),
            ],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        made = json.loads(done.stdout)
        assert len(set(made["stored"])) == STORED
        deadline = time.monotonic() + 60
        while _stored_at(openai_url) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _stored_at(openai_url) == []
    finally:
        daemon.stop()
    recorded = {e["response_id"]: e for e in _events(workdir, "response.recorded")}
    assert set(recorded) == set(made["stored"]), "store=False ones are never recorded"
    assert all(e["details"]["object"] == "chat.completion" for e in recorded.values())
    deleted = {e["response_id"]: e for e in _events(workdir, "response.deleted")}
    assert set(deleted) == set(made["stored"])
    assert all(e["details"]["verified"] is True for e in deleted.values())
    assert all(e["policy"] == "chats" for e in deleted.values())
    rows = json.loads(cli("ls", "-o", "json", "--object", "chat.completion", cwd=workdir).stdout)
    assert {(r["state"], r["object"]) for r in rows} == {("deleted", "chat.completion")}
    assert any(r["metadata"] for r in rows) if rows and "metadata" in rows[0] else True
    verify = cli("audit", "verify", "--hash-only", "-o", "json", cwd=workdir)
    assert verify.returncode == 0 and json.loads(verify.stdout)["sound"] is True, verify.stdout
