"""Issue 18 end to end: an app on the real openai SDK makes conversations through
`retention.capture`; the daemon deletes each one items first, on its TTL from its last turn."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN, wait_healthy
from tests.helpers import cli, write_config

pytest.importorskip("openai")

CONVERSATIONS, TURNS = 20, 5
POLICIES = """\
version: 1
default:
  ttl: 30d
policies:
  - name: chats
    match: {object: conversation}
    ttl: 2s
    ttl_from: last_activity
"""
DAEMON = "sweep:\n  interval: 1s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n"

APP = """
import json, sys, time
from pathlib import Path
from openai import OpenAI
import retention.capture

base, ingest, spool, token, count, turns = sys.argv[1:7]
client = retention.capture.instrument(
    OpenAI(base_url=base, api_key="test-key", default_headers={"x-fireworks-account-id": "acme"}),
    ingest_url=ingest, token=token, provider="fireworks", spool_path=spool)
made = []
for n in range(int(count)):
    conversation = client.conversations.create(metadata={"user_id": f"user-{n}"})
    for turn in range(int(turns)):
        client.responses.create(model="m", input=f"turn {turn}", conversation=conversation.id)
    made.append(conversation.id)
time.sleep(1.0)  # then one more turn in the last conversation
client.responses.create(model="m", input="one more", conversation=made[-1])
late_at = time.time()
print(json.dumps({"made": made, "late_at": late_at}), flush=True)
while Path(spool).exists() and Path(spool).stat().st_size:
    time.sleep(0.05)
"""


def _app(workdir: Path, base: str, daemon: DaemonProcess, *args: str) -> dict[str, Any]:
    """Run the app to the end (its spool shipped); the conversation IDs it made, and when
    it made the late turn."""
    done = subprocess.run(
        [
            sys.executable,
            "app.py",
            base,
            daemon.url(""),
            str(workdir / "spool.jsonl"),
            TOKEN,
            *args,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def _census(base: str) -> dict[str, dict[str, Any]]:
    """What the stand-in still stores of each conversation."""
    control = base.rsplit("/v1", 1)[0] + "/_standin/conversations"
    with urllib.request.urlopen(control, timeout=10) as answer:
        return dict(json.loads(answer.read())["conversations"])


def _items_status(base: str, conversation: str) -> int:
    """The status of listing a conversation's items at the stand-in."""
    request = urllib.request.Request(
        f"{base}/conversations/{conversation}/items",
        headers={"Authorization": "Bearer test-key", "x-fireworks-account-id": "acme"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _events(workdir: Path, name: str) -> list[dict[str, Any]]:
    """The ledger's events of one name, in order."""
    with sqlite3.connect(workdir / "retention.db") as conn:
        lines = conn.execute(
            "SELECT line FROM audit_events WHERE event = ? ORDER BY seq", (name,)
        ).fetchall()
    return [json.loads(line) for (line,) in lines]


def _moment(text: str) -> datetime:
    """An audit time as a datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_conversations_go_items_first_on_their_ttl_from_the_last_turn(
    workdir: Path, standin_process: str
) -> None:
    """20 conversations of 5 turns each; the last gets a sixth turn a second later and is kept
    until 2 s after it; then every item and every conversation is gone at the stand-in (each
    item listing answers 404), each with its events, and the trail verifies."""
    write_config(workdir, standin_process, extra=DAEMON, policies=POLICIES)
    (workdir / "app.py").write_text(APP)
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        wait_healthy(daemon)
        printed = _app(workdir, standin_process, daemon, str(CONVERSATIONS), str(TURNS))
        made, late = printed["made"], printed["made"][-1]
        assert len(made) == CONVERSATIONS
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            census = _census(standin_process)
            if all(census[c]["deleted"] and census[c]["items"] == 0 for c in made):
                break
            time.sleep(0.3)
        census = _census(standin_process)
        assert all(census[c] == {"deleted": True, "items": 0} for c in made), census
    finally:
        daemon.stop()
    assert all(_items_status(standin_process, c) == 404 for c in made)
    deleted = {e["response_id"]: e for e in _events(workdir, "conversation.deleted")}
    assert set(deleted) == set(made)  # each once
    assert {c: deleted[c]["details"]["items"] for c in made} == {
        c: 2 * (TURNS + (c == late)) for c in made
    }
    assert _moment(deleted[late]["ts"]).timestamp() >= printed["late_at"] + 2  # never early
    moved = [e for e in _events(workdir, "response.deadline_changed") if e["response_id"] == late]
    assert moved and moved[-1]["details"]["reason"] == "conversation activity"
    verify = cli("audit", "verify", "--hash-only", "-o", "json", cwd=workdir)
    assert verify.returncode == 0 and json.loads(verify.stdout)["sound"] is True, verify.stdout
