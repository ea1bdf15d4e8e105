"""Capture against a real Llama Stack: an app on the real openai SDK, instrumented with
`retention.capture`, makes responses and stored chat completions; the daemon records exactly the
stored ones. Responses are then deleted on their TTL; chat completions, which Llama Stack
cannot delete (405), end as the cannot-delete outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from compat.llamastack import MODEL
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN, wait_healthy
from tests.compat.support import (
    ALICE,
    KEY_ENV,
    PROVIDER,
    LlamaStack,
    configure,
    events,
    figure,
    retention,
    rows,
    verify_trail,
)

pytestmark = pytest.mark.compat
pytest.importorskip("openai")

STORED, UNSTORED = 14, 2
SERVER = "server:\n  listen: 127.0.0.1:0\n"

# the app: capture on the real SDK; it makes `stored` objects with store=True, then `unstored`
# without, prints their IDs and waits until its spool is shipped
APP_HEAD = """
import json, sys, time
from pathlib import Path
from openai import OpenAI
import retention.capture

base, ingest, spool, token, key, provider, model, stored, unstored = sys.argv[1:10]
client = retention.capture.instrument(
    OpenAI(base_url=base, api_key=key, max_retries=0),
    ingest_url=ingest, token=token, provider=provider, spool_path=spool)
made = {"stored": [], "unstored": [], "streamed": 0}
for n in range(int(stored) + int(unstored)):
    store = n < int(stored)
"""
APP_TAIL = """
print(json.dumps(made), flush=True)
while Path(spool).exists() and Path(spool).stat().st_size:
    time.sleep(0.05)
"""

RESPONSES_APP = (
    APP_HEAD
    + """
    asked = dict(model=model, input=f"turn {n}", store=store, metadata={"batch": "due"})
    if n % 3 == 0:
        ids = {event.response.id for event in client.responses.create(stream=True, **asked)
               if event.type in ("response.created", "response.completed")}
        assert len(ids) == 1, ids
        rid = ids.pop()
        made["streamed"] += store
    else:
        rid = client.responses.create(**asked).id
    made["stored" if store else "unstored"].append(rid)
"""
    + APP_TAIL
)

CHAT_APP = (
    APP_HEAD
    + """
    asked = dict(model=model, messages=[{"role": "user", "content": f"hello {n}"}], store=store)
    if n % 2:
        chunks = list(client.chat.completions.create(stream=True, **asked))
        cid = chunks[0].id
        made["streamed"] += store
    else:
        cid = client.chat.completions.create(**asked).id
    made["stored" if store else "unstored"].append(cid)
"""
    + APP_TAIL
)


@pytest.fixture
def start_daemon(workdir: Path, llamastack: LlamaStack) -> Iterator[Callable[[str], DaemonProcess]]:
    """Start `retention run` pointed at Llama Stack, sweeping every `interval`, healthy when
    handed over; killed after."""
    started: list[DaemonProcess] = []

    def start(interval: str) -> DaemonProcess:
        """One daemon."""
        configure(workdir, llamastack.base_url, extra=f"sweep:\n  interval: {interval}\n{SERVER}")
        process = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN, KEY_ENV: ALICE})
        started.append(process)
        wait_healthy(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def run_app(
    workdir: Path, app: str, llamastack: LlamaStack, daemon: DaemonProcess
) -> dict[str, Any]:
    """Run an app to its end (its spool shipped); the IDs it made, stored and not."""
    (workdir / "app.py").write_text(app)
    args = [llamastack.base_url, daemon.url(""), str(workdir / "spool.jsonl"), TOKEN, ALICE]
    done = subprocess.run(
        [sys.executable, "app.py", *args, PROVIDER, MODEL, str(STORED), str(UNSTORED)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def wait_for(check: Any, timeout: float = 60) -> None:
    """Poll `check()` until it is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_captured_responses_are_recorded_exactly_and_deleted(
    workdir: Path, llamastack: LlamaStack, start_daemon: Callable[[str], DaemonProcess]
) -> None:
    """14 responses with store=True (5 streamed) and 2 with store=False through capture: the
    daemon records exactly the 14, deletes each on its 1 s TTL, verified 404 at Llama Stack;
    the 2 were never recorded nor stored; the trail verifies."""
    daemon = start_daemon("1s")
    made = run_app(workdir, RESPONSES_APP, llamastack, daemon)
    stored, unstored = made["stored"], made["unstored"]
    assert (len(set(stored)), len(set(unstored))) == (STORED, UNSTORED)
    wait_for(lambda: len(events(workdir, "response.deleted")) >= STORED)
    assert daemon.stop() == 0
    recorded = {e["response_id"] for e in events(workdir, "response.recorded")}
    assert recorded == set(stored), "exactly the stored ones"
    deleted = {e["response_id"]: e for e in events(workdir, "response.deleted")}
    assert set(deleted) == set(stored)
    assert all(e["details"]["verified"] is True for e in deleted.values())
    ledger = rows(workdir)
    assert {ledger[rid]["state"] for rid in stored} == {"deleted"}
    assert all(ledger[rid]["created_at"] for rid in stored)
    at_server = llamastack.statuses([f"/responses/{rid}" for rid in stored + unstored])
    assert set(at_server.values()) == {404}
    verify = verify_trail(workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figure(
        "capture responses",
        created_stored=len(stored),
        streamed_stored=made["streamed"],
        created_unstored=len(unstored),
        recorded=len(recorded),
        deleted=len(deleted),
        verified_404_at_server=sum(at_server[f"/responses/{rid}"] == 404 for rid in stored),
    )


def test_stored_chat_completions_end_as_cannot_delete(
    workdir: Path, llamastack: LlamaStack, start_daemon: Callable[[str], DaemonProcess]
) -> None:
    """14 chat completions with store=True (7 streamed) and 2 with store=False through
    capture: the daemon records exactly the 14, as `chat.completion`; once due, `sweep` meets
    Llama Stack's 405 to DELETE: it exits 1, leaves them pending with 0 attempts, not due
    again for an hour, writes one `provider.cannot_delete`, never `deleted` nor `absent`; the next
    sweep finds nothing due and writes no second event."""
    daemon = start_daemon("1h")  # the daemon records; the user's `sweep` deletes
    made = run_app(workdir, CHAT_APP, llamastack, daemon)
    stored, unstored = made["stored"], made["unstored"]
    assert (len(set(stored)), len(set(unstored))) == (STORED, UNSTORED)
    wait_for(lambda: len(events(workdir, "response.recorded")) >= STORED)
    assert daemon.stop() == 0
    recorded = {e["response_id"]: e for e in events(workdir, "response.recorded")}
    assert set(recorded) == set(stored), "exactly the stored ones"
    ledger = rows(workdir)
    assert {(ledger[cid]["object"], ledger[cid]["state"]) for cid in stored} == {
        ("chat.completion", "pending")
    }
    time.sleep(2.1)  # the `completions` policy: 1 s
    sweep = retention(workdir, "sweep")
    assert sweep.returncode == 1, sweep.stdout + sweep.stderr
    ledger = rows(workdir)
    assert {(ledger[cid]["state"], ledger[cid]["attempts"]) for cid in stored} == {("pending", 0)}
    assert not set(rows(workdir, "--due")) & set(stored), "tried again later, not now"
    again = retention(workdir, "sweep")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing due for an hour
    (fault,) = events(workdir, "provider.cannot_delete")
    assert fault["http_status"] == 405, fault
    assert events(workdir, "response.deleted") == []
    assert events(workdir, "response.absent") == []
    at_server = llamastack.statuses([f"/chat/completions/{cid}" for cid in stored + unstored])
    assert set(at_server.values()) == {200}, at_server
    verify = verify_trail(workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figure(
        "capture chat completions",
        created_stored=len(stored),
        streamed_stored=made["streamed"],
        created_unstored=len(unstored),
        recorded=len(recorded),
        deleted=0,
        pending_attempts_0=len(stored),
        cannot_delete_events=1,
        still_200_at_server_incl_unstored=len(at_server),
    )
