"""Legal holds as the operator (`retention hold`) and an app (`/v1/holds`) place and lift them:
held IDs survive sweeps, a hold with `--until` lifts itself and the next sweep deletes them,
every step in the audit trail with its reason and ticket."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from retention.cli.main import cli as retention_cli
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN
from tests.helpers import LONG_AGO, auditor_verify, cli, seed, standin_requests, write_config

SLOW_SWEEPS = "sweep:\n  interval: 60s\ndiscover:\n  interval: 0s\nserver:\n  listen: 127.0.0.1:0\n"


def _deletes(base_url: str) -> list[str]:
    """IDs the stand-in was asked to DELETE, in order."""
    return [
        r["path"].rsplit("/", 1)[1] for r in standin_requests(base_url) if r["method"] == "DELETE"
    ]


def _trail(workdir: Path) -> list[dict[str, Any]]:
    """The audit file's records."""
    return [json.loads(line) for line in (workdir / "audit.jsonl").read_text().splitlines()]


def test_hold_subcommands_have_help() -> None:
    """`--help` works on `hold` and each of its commands, with no configuration present."""
    runner = CliRunner()
    for command in (["hold"], ["hold", "add"], ["hold", "rm"], ["hold", "ls"]):
        result = runner.invoke(retention_cli, [*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def test_a_hold_until_3s_survives_a_sweep_then_lifts_itself(
    workdir: Path, standin_process: str
) -> None:
    """`hold add --until 3s`: the held IDs survive a sweep, the hold lifts itself, the next
    sweep deletes them; the trail says who, why and under which ticket at each step."""
    write_config(workdir, standin_process)
    seed(standin_process, [{"id": i} for i in ("h1", "h2", "free")])
    assert cli("record", "h1", "h2", "free", "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    added = cli(
        "hold", "add", "h1", "h2", "--reason", "litigation M-7", "--ticket", "LEG-7",
        "--until", "3s", "--name", "m7", cwd=workdir,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "hold m7 placed, until" in added.stdout and "held now 2" in added.stdout
    taken = cli("hold", "add", "h1", "--reason", "again", "--name", "m7", cwd=workdir)
    assert taken.returncode == 2 and "'m7' is taken" in taken.stderr
    assert len(taken.stderr.strip().splitlines()) == 1
    first = cli("sweep", cwd=workdir)
    assert first.returncode == 0, first.stderr
    assert _deletes(standin_process) == ["free"], "held IDs are never sent"
    listed = json.loads(cli("hold", "ls", "-o", "json", cwd=workdir).stdout)
    mine = next(h for h in listed if h["name"] == "m7")
    assert (mine["state"], mine["held"], mine["ticket"]) == ("active", 2, "LEG-7")
    explained = cli("explain", "h1", cwd=workdir).stdout
    assert "held by:" in explained and "reason 'litigation M-7', ticket LEG-7" in explained
    until = datetime.fromisoformat(mine["until"])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    second = cli("sweep", cwd=workdir)
    assert second.returncode == 0, second.stderr
    assert sorted(_deletes(standin_process)) == ["free", "h1", "h2"]
    trail = _trail(workdir)
    names = [r["event"] for r in trail]
    placed = trail[names.index("hold.placed")]["details"]
    assert (placed["hold"], placed["reason"], placed["ticket"]) == ("m7", "litigation M-7", "LEG-7")
    assert placed["actor"].startswith("cli:") and placed["held"] == 2
    lifted_at = names.index("hold.lifted")
    lifted = trail[lifted_at]["details"]
    assert (lifted["actor"], lifted["expired"], lifted["ticket"]) == ("expiry", True, "LEG-7")
    assert lifted["reason"] and lifted["released"] == 2
    for event in ("response.held", "response.released"):
        found = [r for r in trail if r["event"] == event and r["response_id"] in ("h1", "h2")]
        assert sorted(r["response_id"] for r in found) == ["h1", "h2"], event
        assert {r["details"]["hold"] for r in found} == {"m7"}, event
    deleted = [i for i, r in enumerate(trail) if r["event"] == "response.deleted"]
    assert len(deleted) == 3 and sum(i > lifted_at for i in deleted) == 2
    assert auditor_verify(workdir / "audit.jsonl") == len(trail)


def _send(
    daemon: DaemonProcess, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    """(status, JSON answer) of one request to the daemon."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(daemon.url(path), data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_holds_over_http(
    start: Callable[..., DaemonProcess], standin_process: str, workdir: Path
) -> None:
    """POST, GET and DELETE /v1/holds with the ingest token: 401 without it, 400 naming the
    bad field, 201 with what it held, 409 for a taken name or a file's hold, 404 for an
    unknown one; lifting makes the daemon sweep the released IDs at once."""
    daemon = start(SLOW_SWEEPS)
    seed(standin_process, [{"id": i} for i in ("r1", "r2", "r3")])
    records = [{"id": "r1"}, {"id": "r2"}, {"id": "r3", "metadata": {"matter": "M-9"}}]
    status, _ = _send(
        daemon, "POST", "/v1/records", {"records": [{**r, "created_at": LONG_AGO} for r in records]}
    )
    assert status == 202
    # it lifts itself, and a sweep follows at once: long enough after that the other hold
    # below is placed first even on a loaded machine (else that sweep takes r1 and r3 too)
    brief = {"ids": ["r2"], "reason": "a day in court", "until": "3s", "name": "brief"}
    assert _send(daemon, "POST", "/v1/holds", brief)[0] == 201
    hold = {"ids": ["r1"], "match": {"metadata": {"matter": "M-9"}}, "reason": "order 12"}
    assert _send(daemon, "POST", "/v1/holds", hold, token=None)[0] == 401
    assert _send(daemon, "GET", "/v1/holds", token="wrong")[0] == 401
    for bad, fragment in [
        ({**hold, "reason": ""}, "reason: say why"),
        ({**hold, "until": "soon"}, "until: expected"),
        ({**hold, "colour": 1}, "unknown field 'colour'"),
        ({**hold, "ids": ["no good"]}, "ids[0]: invalid response ID"),
    ]:
        status, answer = _send(daemon, "POST", "/v1/holds", bad)
        assert (status, fragment in answer["error"]) == (400, True), answer
    status, placed = _send(daemon, "POST", "/v1/holds", {**hold, "ticket": "T-12", "name": "web"})
    assert status == 201, placed
    assert (placed["name"], placed["held"], placed["ticket"]) == ("web", 2, "T-12")
    assert placed["actor"].startswith("http:")
    assert _send(daemon, "POST", "/v1/holds", {**hold, "name": "web"})[0] == 409
    status, listed = _send(daemon, "GET", "/v1/holds")
    assert status == 200
    shown = [(h["name"], h["source"]) for h in listed["holds"]]  # "brief" may be lifted by now
    assert (shown[0], shown[-1]) == (("case-2026-113", "policies_file"), ("web", "ledger"))
    status, answer = _send(daemon, "DELETE", "/v1/holds/case-2026-113?reason=x")
    assert status == 409 and "policies.yaml" in answer["error"]
    assert _send(daemon, "DELETE", "/v1/holds/nope?reason=x")[0] == 404
    status, answer = _send(daemon, "DELETE", "/v1/holds/web")
    assert status == 400 and "reason" in answer["error"]
    status, lifted = _send(daemon, "DELETE", "/v1/holds/web", {"reason": "order lifted"})
    assert status == 200, lifted
    assert (lifted["state"], lifted["released"], lifted["due_now"]) == ("lifted", 2, 2)
    end = time.monotonic() + 5
    while {"r1", "r3"} - set(_deletes(standin_process)) and time.monotonic() < end:
        time.sleep(0.05)
    assert {"r1", "r3"} <= set(_deletes(standin_process)), "swept at once"
    while "r2" not in _deletes(standin_process) and time.monotonic() < end + 3:
        time.sleep(0.05)
    assert "r2" in _deletes(standin_process), "its hold lifted itself, then a sweep at once"
    status, listed = _send(daemon, "GET", "/v1/holds?all=true")
    states = {h["name"]: (h["state"], h["lifted_by"]) for h in listed["holds"]}
    assert states == {
        "case-2026-113": ("active", None),
        "brief": ("lifted", "expiry"),
        "web": ("lifted", placed["actor"]),
    }
    assert daemon.stop() == 0
    assert not daemon.events("hold.expiry_failed") and not daemon.events("sweep.crashed")
