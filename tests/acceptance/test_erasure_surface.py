"""Erasure by data subject as the operator (`retention erase`) and the app (`POST /v1/erasures`)
ask for it: bad input refused in one clear line, the daemon deleting at once, holds kept."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN
from tests.helpers import cli, seed, standin_requests, write_config

ALICE = "alice-7d1f@example.org"  # a subject value: it must show up nowhere we write
SLOW_SWEEPS = "sweep:\n  interval: 60s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n"
NOWHERE = "http://127.0.0.1:9/v1"  # bad input never reaches the provider
HELD = {"matter": "2026-113"}  # the test policies hold records with this metadata


def _erase(workdir: Path, *args: str) -> Any:
    """`retention erase ARGS -o json`, which must succeed; its JSON."""
    result = cli("erase", *args, "-o", "json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert ALICE not in result.stdout + result.stderr
    return json.loads(result.stdout)


def _deletes(base_url: str) -> set[str]:
    """IDs the stand-in has answered a DELETE for."""
    return {
        r["path"].rsplit("/", 1)[1] for r in standin_requests(base_url) if r["method"] == "DELETE"
    }


def _files_hold(workdir: Path, value: str) -> list[str]:
    """Files of the state folder whose bytes contain `value`."""
    return [p.name for p in workdir.iterdir() if p.is_file() and value.encode() in p.read_bytes()]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--subject", f"email={ALICE}", "--reason", "r"], "--subject"),
        (["--subject", "user_id=", "--reason", "r"], "--subject"),
        (["--subject", "user_id=   ", "--reason", "r"], "--subject"),
        (["--reason", "r"], "--subject"),
        (["--subject", f"user_id={ALICE}"], "--reason"),
        (["--subject", f"user_id={ALICE}", "--reason", "  "], "--reason"),
        (["--subject", ALICE, "--reason", "r"], "--subject"),
        (
            ["--subject", f"user_id={ALICE}", "--subject", "user_id=bob", "--reason", "r"],
            "--subject",
        ),
        (["--subject", f"user_id={'x' * 300}", "--reason", "r"], "--subject"),
        ([arg for i in range(10_000) for arg in ("--subject", f"k{i}=v{i}")], "--subject"),
    ],
    ids=[
        "unknown-key",
        "empty-value",
        "blank-value",
        "no-subject",
        "no-reason",
        "blank-reason",
        "no-equals",
        "key-twice",
        "value-too-long",
        "10000-pairs",
    ],
)
def test_erase_refuses_bad_input_in_one_line(workdir: Path, args: list[str], option: str) -> None:
    """Bad input exits 2 with one line naming the option, never echoing the subject's value."""
    write_config(workdir, NOWHERE)
    result = cli("erase", *args, cwd=workdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"retention: error: {option}: "), lines
    assert ALICE not in result.stderr and result.stdout == ""
    assert not (workdir / "audit.jsonl").exists(), "nothing was written"


def test_erase_a_subject_with_no_records_completes_at_once(workdir: Path) -> None:
    """Nobody by that value: the request is completed with zero, and listed as such."""
    write_config(workdir, NOWHERE)
    summary = _erase(workdir, "--subject", f"user_id={ALICE}", "--reason", "DSR-1")
    assert summary["state"] == "completed" and summary["matched"] == 0 and summary["due"] == 0
    status = json.loads(
        cli("erasure", "status", summary["erasure_id"], "-o", "json", cwd=workdir).stdout
    )
    assert status["state"] == "completed" and status["counts"]["matched"] == 0
    listed = json.loads(
        cli("erasure", "ls", "--state", "completed", "-o", "json", cwd=workdir).stdout
    )
    assert [e["erasure_id"] for e in listed] == [summary["erasure_id"]]
    assert (
        json.loads(cli("erasure", "ls", "--state", "open", "-o", "json", cwd=workdir).stdout) == []
    )
    unknown = cli("erasure", "status", "er_nosuch", cwd=workdir)
    assert unknown.returncode == 2 and "no erasure request" in unknown.stderr


def test_erase_dry_run_then_request_then_sweep(workdir: Path, standin_process: str) -> None:
    """--dry-run lists what would go and what is withheld and changes nothing; the request
    makes them due, a sweep deletes them, and status says completed with the held one withheld."""
    write_config(workdir, standin_process)
    rows = [
        {"id": "a_1", "metadata": {"user_id": ALICE}},
        {"id": "a_2", "metadata": {"user_id": ALICE}},
        {"id": "a_held", "metadata": {"user_id": ALICE, **HELD}},
        {"id": "b_1", "metadata": {"user_id": "bob"}},
    ]
    seed(standin_process, [{"id": r["id"]} for r in rows])
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    assert cli("import", "-", cwd=workdir, stdin=lines).returncode == 0
    audit_before = (workdir / "audit.jsonl").read_text()
    preview = _erase(workdir, "--subject", f"user_id={ALICE}", "--reason", "DSR-2", "--dry-run")
    assert sorted(i["response_id"] for i in preview["would_delete"]) == ["a_1", "a_2"]
    assert [(i["response_id"], i["hold"]) for i in preview["withheld"]] == [
        ("a_held", "case-2026-113")
    ]
    assert (workdir / "audit.jsonl").read_text() == audit_before, "a dry run writes nothing"
    table = cli(
        "erase", "--subject", f"user_id={ALICE}", "--reason", "DSR-2", "--dry-run", cwd=workdir
    )
    assert "would delete 2, withhold 1" in table.stdout and ALICE not in table.stdout
    summary = _erase(
        workdir, "--subject", f"user_id={ALICE}", "--reason", "DSR-2", "--ticket", "T-9"
    )
    assert (summary["state"], summary["matched"], summary["due"], summary["withheld"]) == (
        "open",
        3,
        2,
        1,
    )
    assert cli("sweep", cwd=workdir).returncode == 0
    assert _deletes(standin_process) == {"a_1", "a_2"}
    status = cli("erasure", "status", summary["erasure_id"], cwd=workdir)
    assert "completed" in status.stdout and "deleted 2" in status.stdout
    assert "a_held" in status.stdout and "case-2026-113" in status.stdout
    assert _files_hold(workdir, ALICE) == []


def _post_records(daemon: DaemonProcess, records: list[dict[str, Any]]) -> None:
    """Ingest records through the daemon."""
    status, text = daemon.request("/v1/records", body={"records": records}, token=TOKEN)
    assert status == 202, text


def _wait_for(what: Callable[[], bool], timeout: float) -> bool:
    """Whether `what()` turns true within `timeout` seconds."""
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def test_post_erasure_deletes_at_once_and_keeps_holds(
    start: Callable[..., DaemonProcess], standin_process: str, workdir: Path
) -> None:
    """POST /v1/erasures: the subject's unheld records are deleted well before the 60 s sweep
    interval, none of another subject's nor the held ones; GET says completed, withheld
    listed; the value is in no file or log line."""
    daemon = start(SLOW_SWEEPS)
    alice = [f"al_{i}" for i in range(40)]
    held = [f"alh_{i}" for i in range(5)]
    bob = [f"bo_{i}" for i in range(10)]
    seed(standin_process, [{"id": i} for i in alice + held + bob])
    _post_records(
        daemon,
        [{"id": i, "metadata": {"user_id": ALICE}} for i in alice]
        + [{"id": i, "metadata": {"user_id": ALICE, **HELD}} for i in held]
        + [{"id": i, "metadata": {"user_id": "bob"}} for i in bob],
    )
    assert _wait_for(lambda: bool(daemon.events("sweep.done")), 20), "the first sweep ran"
    sweeps = len(daemon.events("sweep.done"))
    posted = time.monotonic()
    status, text = daemon.request(
        "/v1/erasures",
        token=TOKEN,
        body={"subject": {"user_id": ALICE}, "reason": "DSR-3", "ticket": "T-3"},
    )
    assert status == 202, text
    answer = json.loads(text)
    assert (answer["state"], answer["matched"], answer["due"], answer["withheld"]) == (
        "open",
        45,
        40,
        5,
    )
    assert _wait_for(lambda: _deletes(standin_process) >= set(alice), 5), "deleted at once"
    took = time.monotonic() - posted
    print(f"POST /v1/erasures to the last DELETE: {took:.2f} s")
    assert _deletes(standin_process) == set(alice), "none of bob's, none held"

    def completed() -> bool:
        return (
            json.loads(daemon.request(f"/v1/erasures/{answer['erasure_id']}", token=TOKEN)[1])[
                "state"
            ]
            == "completed"
        )

    assert _wait_for(completed, 5)
    assert _wait_for(lambda: len(daemon.events("sweep.done")) > sweeps, 5), "a sweep of its own"
    code, text = daemon.request(f"/v1/erasures/{answer['erasure_id']}", token=TOKEN)
    progress = json.loads(text)
    assert code == 200 and progress["counts"]["deleted"] == 40
    assert progress["counts"]["withheld"] == 5 and progress["ticket"] == "T-3"
    assert sorted(w["response_id"] for w in progress["withheld"]) == sorted(held)
    assert {w["hold"] for w in progress["withheld"]} == {"case-2026-113"}
    assert daemon.stop() == 0
    assert ALICE not in json.dumps(daemon.lines) + "".join(daemon.stderr)
    assert _files_hold(workdir, ALICE) == []


BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("unknown key", {"subject": {"email": ALICE}, "reason": "r"}, 400, "not a subject key"),
    ("empty value", {"subject": {"user_id": ""}, "reason": "r"}, 400, "non-empty string"),
    ("number value", {"subject": {"user_id": 7}, "reason": "r"}, 400, "non-empty string"),
    ("long value", {"subject": {"user_id": "x" * 300}, "reason": "r"}, 400, "at most 256"),
    ("no subject", {"reason": "r"}, 400, "subject: give one or more of user_id"),
    ("subject list", {"subject": [{"user_id": ALICE}], "reason": "r"}, 400, "subject: give"),
    (
        "more pairs than keys",
        {"subject": {"user_id": ALICE, "a": "1"}, "reason": "r"},
        400,
        "at most 1",
    ),
    (
        "10,000 pairs",
        {"subject": {f"k{i}": f"v{i}" for i in range(10_000)}, "reason": "r"},
        413,
        "over 64 KiB",
    ),
    ("no reason", {"subject": {"user_id": ALICE}}, 400, "reason: say why"),
    ("not an object", [ALICE], 400, "expected {"),
    (
        "unknown field",
        {"subject": {"user_id": ALICE}, "reason": "r", "why": 1},
        400,
        "unknown field",
    ),
    (
        "dry_run text",
        {"subject": {"user_id": ALICE}, "reason": "r", "dry_run": "yes"},
        400,
        "dry_run",
    ),
]


def test_post_erasure_refuses_bad_input_clearly(
    start: Callable[..., DaemonProcess], workdir: Path
) -> None:
    """Each bad request gets a 4xx naming what is wrong, never the value; no token 401; an
    unknown id 404; a subject without records completes at once with zero."""
    daemon = start(SLOW_SWEEPS)
    good = {"subject": {"user_id": ALICE}, "reason": "r"}
    assert daemon.request("/v1/erasures", body=good)[0] == 401
    assert daemon.request("/v1/erasures", body=good, token="wrong")[0] == 401
    assert daemon.request("/v1/erasures/er_0", token="wrong")[0] == 401
    for name, body, code, fragment in BAD_BODIES:
        status, text = daemon.request("/v1/erasures", body=body, token=TOKEN)
        error = json.loads(text)["error"]
        assert (status, fragment in error) == (code, True), (name, status, error)
        assert ALICE not in error, name
    status, text = daemon.request("/v1/erasures/er_nosuch", token=TOKEN)
    assert status == 404 and "no erasure request" in json.loads(text)["error"]
    status, text = daemon.request("/v1/erasures", body={**good, "dry_run": True}, token=TOKEN)
    assert status == 200 and json.loads(text)["would_delete"] == []
    status, text = daemon.request("/v1/erasures", body=good, token=TOKEN)
    answer = json.loads(text)
    assert status == 202 and answer["state"] == "completed" and answer["matched"] == 0
    code, text = daemon.request(f"/v1/erasures/{answer['erasure_id']}", token=TOKEN)
    assert code == 200 and json.loads(text)["completed_at"]
    assert ALICE not in json.dumps(daemon.lines) + "".join(daemon.stderr)
    assert _files_hold(workdir, ALICE) == []


def test_post_erasure_is_off_without_a_token(workdir: Path, standin_process: str) -> None:
    """No ingest token configured: the erasure routes answer 404 saying ingest is off."""
    write_config(workdir, standin_process, extra=SLOW_SWEEPS)
    daemon = DaemonProcess(workdir, {})
    try:
        status, text = daemon.request(
            "/v1/erasures", body={"subject": {"user_id": "u"}, "reason": "r"}, token=TOKEN
        )
        assert status == 404 and "ingest is off" in json.loads(text)["error"]
    finally:
        daemon.stop()


def _make_older_ledger(workdir: Path, ids: list[str]) -> None:
    """Turn the ledger into one tracked before subjects were: raw values in metadata, no
    index rows, the backfill still to pass every record."""
    with sqlite3.connect(workdir / "retention.db") as db:
        for rid in ids:
            db.execute(
                "UPDATE records SET meta = ? WHERE response_id = ?",
                (json.dumps({"user_id": ALICE}), rid),
            )
        db.execute("DELETE FROM record_subjects")
        top = db.execute("SELECT MAX(id) FROM records").fetchone()[0]
        db.execute("UPDATE meta SET value = '0' WHERE key = 'erasure:backfill_after'")
        db.execute("UPDATE meta SET value = ? WHERE key = 'erasure:backfill_until'", (str(top),))


def _erasure_check(workdir: Path) -> str:
    """`retention doctor`'s erasure check as "RESULT detail"."""
    result = cli("doctor", "-o", "json", cwd=workdir)
    check = next(c for c in json.loads(result.stdout)["checks"] if c["check"] == "erasure")
    return f"{check['result']} {check['detail']}"


def test_daemon_backfills_an_older_ledger_and_doctor_tells(
    workdir: Path, standin_process: str
) -> None:
    """Records tracked before subjects were: doctor fails the erasure check naming how many
    are left; the daemon indexes them in the background, says so once, and doctor passes."""
    write_config(workdir, standin_process, extra=SLOW_SWEEPS)
    ids = [f"old_{i}" for i in range(20)]
    assert cli("record", *ids, "--meta", "user_id=x", cwd=workdir).returncode == 0
    _make_older_ledger(workdir, ids)
    assert _erasure_check(workdir) == (
        "FAIL 20 records not yet indexed by subject; `retention run` or `retention erase` "
        "finishes it"
    )
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        assert _wait_for(lambda: bool(daemon.events("subjects.backfill_finished")), 10)
        status, text = daemon.request(
            "/v1/erasures", body={"subject": {"user_id": ALICE}, "reason": "r"}, token=TOKEN
        )
        assert status == 202 and json.loads(text)["due"] == 20
    finally:
        assert daemon.stop() == 0
    assert len(daemon.events("subjects.backfill_finished")) == 1
    assert daemon.events("subjects.backfill_finished")[0]["record_ids"] == 20
    assert _erasure_check(workdir).startswith("OK ")


def test_doctor_fails_an_erasure_key_open_to_others(workdir: Path, standin_process: str) -> None:
    """An erasure key readable by others fails doctor's erasure check."""
    write_config(workdir, standin_process)
    key = workdir / "erasure.key"
    key.write_text("ab" * 32 + "\n")
    key.chmod(0o644)
    check = _erasure_check(workdir)
    assert check.startswith("FAIL ") and "erasure.key" in check
    key.chmod(0o600)
    assert _erasure_check(workdir).startswith("OK ")
