"""Deletion at a real Llama Stack: IDs recorded or imported are deleted on their deadline and
verified gone at the server, holds keep theirs, and a wrong base URL, another principal's key
or a refused key stop the sweep before anything is marked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.compat.support import (
    BOB,
    REFUSED,
    LlamaStack,
    configure,
    events,
    figure,
    make_responses,
    retention,
    rows,
    verify_trail,
)

pytestmark = pytest.mark.compat


def wait_due(made: list[dict[str, Any]], ttl: float = 1.0) -> None:
    """Sleep until every response made is past `ttl` from its (whole-second) creation."""
    latest = max(int(item["created_at"]) for item in made)
    time.sleep(max(0.0, latest + ttl + 1.1 - time.time()))


def record_due(workdir: Path, made: list[dict[str, Any]]) -> None:
    """`retention record` the responses as the app's `batch=due` ones, created when the
    newest of them was (the server's created_at is whole seconds)."""
    newest = str(max(int(item["created_at"]) for item in made))
    ids = [item["id"] for item in made]
    done = retention(workdir, "record", *ids, "--created-at", newest, "--meta", "batch=due")
    assert done.returncode == 0, done.stderr


def test_recorded_and_imported_responses_are_deleted_and_verified_gone(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """8 IDs recorded and 8 imported as due, 8 imported under the 30-day default: one sweep
    deletes the 16 (each `deleted`, verified, 404 at Llama Stack), keeps the 8, and the
    trail verifies."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 24, tag="sweep")
    recorded, imported, kept = made[:8], made[8:16], made[16:]
    record_due(workdir, recorded)
    lines = [
        {
            "id": item["id"],
            "created_at": item["created_at"],
            "model": item["model"],
            "metadata": {"batch": "due"} if item in imported else {},
        }
        for item in imported + kept
    ]
    (workdir / "ids.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = retention(workdir, "import", "ids.jsonl")
    assert done.returncode == 0, done.stderr
    wait_due(made)
    sweep = retention(workdir, "sweep", "-o", "json")
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    due = {item["id"] for item in recorded + imported}
    ledger = rows(workdir)
    assert {rid: row["state"] for rid, row in ledger.items() if rid in due} == dict.fromkeys(
        due, "deleted"
    )
    assert {ledger[item["id"]]["state"] for item in kept} == {"pending"}
    deleted = {e["response_id"]: e for e in events(workdir, "response.deleted")}
    assert set(deleted) == due
    assert all(e["details"]["verified"] is True for e in deleted.values())
    at_server = llamastack.statuses([f"/responses/{item['id']}" for item in made])
    assert {at_server[f"/responses/{rid}"] for rid in due} == {404}
    assert {at_server[f"/responses/{item['id']}"] for item in kept} == {200}
    assert events(workdir, "response.absent") == []
    verify = verify_trail(workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figure(
        "record/import + sweep",
        created=len(made),
        due=len(due),
        deleted=len(deleted),
        verified_404_at_server=sum(at_server[f"/responses/{rid}"] == 404 for rid in due),
        kept_200_at_server=sum(at_server[f"/responses/{item['id']}"] == 200 for item in kept),
    )


def test_a_hold_keeps_its_responses_while_the_rest_are_deleted(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """10 due responses, 3 under a hold: the sweep deletes the 7 (404 at Llama Stack) and the 3
    stay `held` and stored; lifting the hold lets the next sweep delete them too."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 10, tag="hold")
    record_due(workdir, made)
    held = [item["id"] for item in made[:3]]
    free = [item["id"] for item in made[3:]]
    placed = retention(
        workdir, "hold", "add", *held, "--reason", "compat litigation", "--name", "compat-hold"
    )
    assert placed.returncode == 0, placed.stderr
    wait_due(made)
    sweep = retention(workdir, "sweep")
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    ledger = rows(workdir)
    assert {ledger[rid]["state"] for rid in held} == {"held"}
    assert {ledger[rid]["state"] for rid in free} == {"deleted"}
    at_server = llamastack.statuses([f"/responses/{rid}" for rid in held + free])
    assert [at_server[f"/responses/{rid}"] for rid in held] == [200] * 3
    assert [at_server[f"/responses/{rid}"] for rid in free] == [404] * 7
    lifted = retention(workdir, "hold", "rm", "compat-hold", "--reason", "case closed")
    assert lifted.returncode == 0, lifted.stderr
    again = retention(workdir, "sweep")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {rows(workdir)[rid]["state"] for rid in held} == {"deleted"}
    after = llamastack.statuses([f"/responses/{rid}" for rid in held])
    assert set(after.values()) == {404}
    figure(
        "hold",
        created=len(made),
        held_kept_200=sum(at_server[f"/responses/{rid}"] == 200 for rid in held),
        deleted_404=sum(at_server[f"/responses/{rid}"] == 404 for rid in free),
        deleted_after_lift_404=sum(status == 404 for status in after.values()),
    )


def _refused_sweep(workdir: Path, made: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Sweep with `key`: it must exit 1 with every ID pending, no attempt charged, nothing
    `absent` or `deleted`; the one fault event it wrote."""
    sweep = retention(workdir, "sweep", key=key)
    assert sweep.returncode == 1, sweep.stdout + sweep.stderr
    ledger = rows(workdir)
    assert {(ledger[item["id"]]["state"], ledger[item["id"]]["attempts"]) for item in made} == {
        ("pending", 0)
    }
    assert events(workdir, "response.absent") == []
    assert events(workdir, "response.deleted") == []
    faults = [
        e
        for name in ("provider.misconfigured", "provider.auth_failed", "provider.unreachable")
        for e in events(workdir, name)
    ]
    assert len(faults) == 1, faults
    return faults[0]


def _fixed_sweep(workdir: Path, llamastack: LlamaStack, made: list[dict[str, Any]]) -> int:
    """With the right URL and key the next sweep deletes them all; how many are 404 now."""
    configure(workdir, llamastack.base_url)
    sweep = retention(workdir, "sweep")
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert {rows(workdir)[item["id"]]["state"] for item in made} == {"deleted"}
    at_server = llamastack.statuses([f"/responses/{item['id']}" for item in made])
    assert set(at_server.values()) == {404}
    return len(at_server)


def test_a_base_url_without_v1_marks_nothing_absent(workdir: Path, llamastack: LlamaStack) -> None:
    """base_url without `/v1` (Llama Stack answers FastAPI's 404 to every route): the sweep
    exits 1, no ID is `absent`, `provider.misconfigured` says the base URL does not serve
    the API; with `/v1` the next sweep deletes them."""
    configure(workdir, llamastack.root)
    made = make_responses(llamastack, 5, tag="no-v1")
    record_due(workdir, made)
    wait_due(made)
    fault = _refused_sweep(workdir, made, key="key-alice")
    assert fault["event"] == "provider.misconfigured"
    assert "answered 404" in fault["error"] and "`/v1` missing" in fault["error"], fault
    stored = llamastack.statuses([f"/responses/{item['id']}" for item in made])
    assert set(stored.values()) == {200}
    gone = _fixed_sweep(workdir, llamastack, made)
    figure(
        "base URL without /v1", created=len(made), absent=0, still_200=5, deleted_once_fixed=gone
    )


def test_another_principals_key_marks_nothing_absent(workdir: Path, llamastack: LlamaStack) -> None:
    """bob's key for alice's responses (Llama Stack answers 404 as for an unknown ID): the
    sweep exits 1, none `absent`, `provider.misconfigured` says the key cannot see them."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 5, tag="bob")
    record_due(workdir, made)
    wait_due(made)
    fault = _refused_sweep(workdir, made, key=BOB)
    assert fault["event"] == "provider.misconfigured"
    assert "cannot see" in fault["error"], fault
    stored = llamastack.statuses([f"/responses/{item['id']}" for item in made])
    assert set(stored.values()) == {200}
    gone = _fixed_sweep(workdir, llamastack, made)
    figure("bob's key", created=len(made), absent=0, still_200=5, deleted_with_alice=gone)


def test_a_refused_key_is_auth_failed(workdir: Path, llamastack: LlamaStack) -> None:
    """A key Llama Stack's auth refuses (401): the sweep exits 1 with `provider.auth_failed`,
    every ID pending, none charged."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 5, tag="refused")
    record_due(workdir, made)
    wait_due(made)
    fault = _refused_sweep(workdir, made, key=REFUSED)
    assert fault["event"] == "provider.auth_failed"
    assert fault["http_status"] == 401, fault
    gone = _fixed_sweep(workdir, llamastack, made)
    figure("refused key", created=len(made), absent=0, deleted_with_alice=gone)
