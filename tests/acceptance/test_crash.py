"""kill -9 at any moment: no ID lost, one terminal event per ID, the chain sound."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (
    LONG_AGO,
    STANDIN_ARGS,
    auditor_verify,
    cli,
    seed,
    standin_requests,
    user_env,
    write_config,
)

N = 3000


@pytest.fixture
def slow_standin() -> str:
    """The stand-in at 40 ms latency, as its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *STANDIN_ARGS, "--latency-ms", "40"],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    yield url
    proc.terminate()
    proc.wait(10)


def _answered(url: str) -> int:
    """DELETEs the stand-in has answered."""
    return sum(1 for r in standin_requests(url) if r["method"] == "DELETE")


def _sweep_killed_after(workdir: Path, url: str, deletions: int) -> None:
    """Start `retention sweep` and SIGKILL it once about `deletions` were answered."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", "sweep"],
        cwd=workdir,
        env=user_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    start = _answered(url)
    while _answered(url) - start < deletions and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sweep_killed_then_restarted_loses_nothing(workdir: Path, slow_standin: str) -> None:
    """SIGKILL at three random moments, then a clean sweep: every ID closed exactly once."""
    url = slow_standin
    write_config(workdir, url, extra="sweep:\n  batch_size: 500\n")
    ids = [f"k{i}" for i in range(N)]
    seed(url, [{"id": i} for i in ids])
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)
    )
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    rng = random.Random(42)
    for _ in range(3):
        _sweep_killed_after(workdir, url, rng.randint(100, 500))
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 0, result.stderr
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    assert len(rows) == N and {r["state"] for r in rows} <= {"deleted", "absent"}
    audit = workdir / "audit.jsonl"
    assert auditor_verify(audit) > N
    terminal = [
        json.loads(line)["response_id"]
        for line in audit.read_text().splitlines()
        if json.loads(line)["event"] in ("response.deleted", "response.absent")
    ]
    assert sorted(terminal) == sorted(ids), "exactly one terminal event per ID"
    assert cli("audit", "verify", cwd=workdir).returncode == 0


def _conversation_of(url: str, items: int) -> str:
    """A conversation of `items` items made at the stand-in through its API; its ID."""
    body = {"items": [{"role": "user", "content": f"turn {n}"} for n in range(items)]}
    request = urllib.request.Request(
        f"{url}/conversations",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": "Bearer test-key",
            "x-fireworks-account-id": "acme",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["id"])


def test_a_conversation_deletion_killed_midway_resumes_once(
    workdir: Path, slow_standin: str
) -> None:
    """A conversation of 500 items, its sweep killed after about 150 item deletions: the next
    sweep deletes the rest and then the conversation, with one `conversation.deleted`. Its
    count is the deletions the ledger recorded: the killed run's last page, answered but not
    yet committed, is gone at the provider but not counted (at most a page of 100)."""
    url = slow_standin
    write_config(workdir, url)
    cid = _conversation_of(url, 500)
    line = {"id": cid, "object": "conversation", "created_at": LONG_AGO}
    (workdir / "ids.jsonl").write_text(json.dumps(line) + "\n")
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    _sweep_killed_after(workdir, url, 150)
    result = cli("sweep", cwd=workdir)
    assert result.returncode == 0, result.stderr
    census = urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/_standin/conversations")
    assert json.loads(census.read())["conversations"][cid] == {"deleted": True, "items": 0}
    events = [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]
    deleted = [e for e in events if e["event"] == "conversation.deleted"]
    assert len(deleted) == 1 and 400 <= deleted[0]["details"]["items"] <= 500
    pages = [e for e in events if e["event"] == "conversation.items_deleted"]
    assert pages[-1]["details"]["items_so_far"] == deleted[0]["details"]["items"]
    assert cli("audit", "verify", cwd=workdir).returncode == 0
