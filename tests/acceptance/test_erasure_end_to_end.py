"""Issue 15 end to end: an app on the real openai SDK, the daemon and the stand-in as separate
processes; one person's erasure deleted within seconds, holds kept, a receipt anyone checks
with the public key, and the person's identifier nowhere we wrote."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN, wait_healthy
from tests.helpers import cli, standin_requests, write_config

pytest.importorskip("openai")

# distinctive values: a byte search for them cannot hit anything by chance
SUBJECTS = {"A": "subject-a-7f3c91", "B": "subject-b-2e8d44", "C": "subject-c-91ab07"}
PER_SUBJECT = 200
HELD_OF_A = 50
HOLD = "legal-hold-a"
POLICIES = f"""\
version: 1
default:
  ttl: 30d
holds:
  - name: {HOLD}
    match: {{metadata: {{hold_me: "yes"}}}}
"""
DAEMON = (
    "sweep:\n  interval: 60s\ndiscover:\n  interval: 0s\n"
    "server:\n  listen: 127.0.0.1:0\n"
    "erasure:\n  subject_keys: [user_id]\n"
)

APP = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from openai import OpenAI
import retention.capture

base, ingest, spool, token, plan = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
client = retention.capture.instrument(
    OpenAI(base_url=base, api_key="test-key", default_headers={"x-fireworks-account-id": "acme"}),
    ingest_url=ingest, token=token, provider="fireworks", spool_path=spool)
jobs = [(label, meta) for label, meta, count in json.loads(plan) for _ in range(count)]

def one(job):
    label, meta = job
    return label, client.responses.create(model="m", input="hello", metadata=meta).id

with ThreadPoolExecutor(8) as pool:
    made = list(pool.map(one, jobs))
ids = {}
for label, rid in made:
    ids.setdefault(label, []).append(rid)
[shipper] = retention.capture._shippers.values()
deadline = time.monotonic() + 30
while shipper.counts["sent"] < len(made) and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"ids": ids, "sent": shipper.counts["sent"]}), flush=True)
"""


def _wait_for(what: Any, timeout: float, step: float = 0.02) -> bool:
    """Whether `what()` turns true within `timeout` seconds."""
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def _deletes(base_url: str) -> Counter[str]:
    """How many DELETEs the stand-in answered, by response ID."""
    return Counter(
        r["path"].rsplit("/", 1)[1] for r in standin_requests(base_url) if r["method"] == "DELETE"
    )


def _run_app(app_dir: Path, base: str, daemon: DaemonProcess, spool: Path) -> dict[str, list[str]]:
    """The app: 200 responses for each of A, B and C, 50 of A's under the hold; their IDs by
    label once the capture sent every one to the daemon."""
    plan = [
        ["A", {"user_id": SUBJECTS["A"]}, PER_SUBJECT - HELD_OF_A],
        ["A_held", {"user_id": SUBJECTS["A"], "hold_me": "yes"}, HELD_OF_A],
        ["B", {"user_id": SUBJECTS["B"]}, PER_SUBJECT],
        ["C", {"user_id": SUBJECTS["C"]}, PER_SUBJECT],
    ]
    (app_dir / "app.py").write_text(APP)
    app = subprocess.run(
        [sys.executable, "app.py", base, daemon.url(""), str(spool), TOKEN, json.dumps(plan)],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert app.returncode == 0, app.stderr
    out = json.loads(app.stdout)
    assert out["sent"] == 3 * PER_SUBJECT, out["sent"]
    return {label: ids for label, ids in out["ids"].items()}


def _stored_at_the_provider(base: str, response_id: str) -> bytes:
    """The stand-in's copy of one response (its metadata as the app sent it)."""
    request = urllib.request.Request(
        f"{base}/responses/{response_id}",
        headers={"Authorization": "Bearer test-key", "x-fireworks-account-id": "acme"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return bytes(reply.read())


def _hits(blob: bytes) -> list[str]:
    """The raw subject values found in `blob`."""
    return [value for value in SUBJECTS.values() if value.encode() in blob]


def test_one_person_erased_at_once_with_holds_kept_and_nothing_left(
    workdir: Path, standin_process: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """600 captured responses of three people, 50 of A's held: POST /v1/erasures for A makes
    the stand-in see a DELETE for each of A's 150 unheld ones within 5 s (sweep interval 60 s)
    and none other; status says completed, 150 deleted, 50 withheld; the receipt verifies with
    the public key alone; no file, dump, export or log holds a raw user_id."""
    began = time.monotonic()
    base = standin_process
    write_config(workdir, base, extra=DAEMON, policies=POLICIES)
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    wait_healthy(daemon)
    assert _wait_for(lambda: bool(daemon.events("sweep.done")), 20), "the start-up sweep ran"
    ids = _run_app(tmp_path_factory.mktemp("app"), base, daemon, workdir / "capture-spool.jsonl")
    unheld, held = set(ids["A"]), set(ids["A_held"])
    others = set(ids["B"]) | set(ids["C"])
    assert (len(unheld), len(held), len(others)) == (150, 50, 400)
    status = json.loads(cli("status", "-o", "json", cwd=workdir).stdout)
    assert status["total"] == 600 and status["states"]["held"] == 50, status["states"]
    assert status["states"]["pending"] == 550 and status["due_now"] == 0
    assert not _deletes(base), "nothing was due before the request"

    posted = time.monotonic()
    code, text = daemon.request(
        "/v1/erasures",
        token=TOKEN,
        body={"subject": {"user_id": SUBJECTS["A"]}, "reason": "DSR-2026-0415"},
    )
    assert code == 202, text
    answer = json.loads(text)
    assert (answer["matched"], answer["due"], answer["withheld"]) == (200, 150, 50)
    erasure_id = answer["erasure_id"]
    assert _wait_for(lambda: set(_deletes(base)) >= unheld, 5), "every DELETE within 5 s"
    took = time.monotonic() - posted
    print(f"\nPOST /v1/erasures to the last of A's 150 DELETEs: {took:.2f} s")

    def completed() -> bool:
        reply = daemon.request(f"/v1/erasures/{erasure_id}", token=TOKEN)[1]
        return bool(json.loads(reply)["state"] == "completed")

    assert _wait_for(completed, 10, step=0.1)
    deletes = _deletes(base)
    assert set(deletes) == unheld, "none of B's or C's, none of the held ones"
    assert max(deletes.values()) == 1, "one DELETE each"
    assert daemon.stop() == 0

    shown = cli("erasure", "status", erasure_id, "-o", "json", cwd=workdir)
    progress = json.loads(shown.stdout)
    assert progress["state"] == "completed" and not progress["overdue"]
    assert progress["counts"]["deleted"] == 150 and progress["counts"]["withheld"] == 50
    assert progress["counts"]["pending"] == 0 and progress["counts"]["failed"] == 0
    assert {w["response_id"] for w in progress["withheld"]} == held
    assert {w["hold"] for w in progress["withheld"]} == {HOLD}

    issued = cli("erasure", "receipt", erasure_id, "-O", "bundle.json", cwd=workdir)
    assert issued.returncode == 0, issued.stderr
    pubkey = cli("audit", "pubkey", cwd=workdir)
    assert pubkey.returncode == 0, pubkey.stderr
    auditor = tmp_path_factory.mktemp("auditor")  # no config there, none in the environment
    (auditor / "pub.pem").write_text(pubkey.stdout)
    (auditor / "bundle.json").write_bytes((workdir / "bundle.json").read_bytes())
    checked = cli("erasure", "verify-receipt", "bundle.json", "--pubkey", "pub.pem", cwd=auditor)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "150 deleted" in checked.stdout and "50 withheld" in checked.stdout, checked.stdout
    facts = json.loads(
        cli(
            "erasure", "verify-receipt", "bundle.json", "--pubkey", "pub.pem", "-o", "json",
            cwd=auditor,
        ).stdout
    )  # fmt: skip
    assert facts["valid"] and facts["erasure_id"] == erasure_id
    assert (facts["deleted"], facts["withheld"]) == (150, 50)
    assert list(auditor.iterdir()) and not (auditor / "retention.yaml").exists()

    exported = cli("audit", "export", "--out", "export.jsonl", cwd=workdir)
    assert exported.returncode == 0, exported.stderr
    with sqlite3.connect(workdir / "retention.db") as db:
        dump = "\n".join(db.iterdump()).encode()
    assert dump.count(b"hmac-sha256:") >= 600, "the digests are there, the values are not"
    files = [p for p in workdir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"retention.db", "audit.jsonl", "export.jsonl", "bundle.json"} <= names, names
    found = {str(p.relative_to(workdir)): _hits(p.read_bytes()) for p in files}
    found["database dump"] = _hits(dump)
    found["daemon stdout"] = _hits(json.dumps(daemon.lines).encode())
    found["daemon stderr"] = _hits("".join(daemon.stderr).encode())
    found["cli output"] = _hits(
        "".join(r.stdout + r.stderr for r in (shown, issued, exported, checked)).encode()
    )
    assert {where: values for where, values in found.items() if values} == {}
    assert _hits(_stored_at_the_provider(base, ids["B"][0])) == [SUBJECTS["B"]], "a real search"
    print(f"whole test: {time.monotonic() - began:.1f} s; searched: {sorted(found)}")
