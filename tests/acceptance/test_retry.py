"""`retention retry` as an operator uses it after an incident: failed IDs go back to pending
with their events, and the next sweep deletes them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LONG_AGO, ago, cli, write_config

IDS = ["resp_r1", "resp_r2", "resp_r3"]


class Provider(ThreadingHTTPServer):
    """A provider on loopback that serves the API's listing and model routes, and answers
    every DELETE with `delete_status` (400: a permanent failure for that ID)."""

    delete_status = 400
    deletes: list[str]


class _Handler(BaseHTTPRequestHandler):
    """The routes a sweep uses."""

    server: Provider

    def log_message(self, *_args: Any) -> None:
        """Quiet."""

    def _json(self, status: int, body: dict[str, Any]) -> None:
        """Answer with a JSON body."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Listing and models answer an empty page; an ID answers that it exists."""
        if self.path.startswith(("/v1/responses?", "/v1/models")) or self.path == "/v1/responses":
            self._json(200, {"object": "list", "data": [], "has_more": False})
        elif self.path.startswith("/v1/responses/"):
            self._json(200, {"id": self.path.rsplit("/", 1)[1], "object": "response"})
        else:
            self._json(404, {"error": {"message": "no such route"}})

    def do_DELETE(self) -> None:
        """The configured answer."""
        self.server.deletes.append(self.path.rsplit("/", 1)[1])
        if self.server.delete_status == 200:
            self._json(200, {"message": "Response deleted successfully"})
        else:
            self._json(self.server.delete_status, {"error": {"message": "invalid response id"}})


@pytest.fixture
def provider() -> Iterator[Provider]:
    """The provider, serving from a thread."""
    server = Provider(("127.0.0.1", 0), _Handler)
    server.deletes = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def failed(workdir: Path, provider: Provider) -> Path:
    """A ledger whose three IDs failed for good (a 400 to their DELETE)."""
    write_config(workdir, f"http://127.0.0.1:{provider.server_address[1]}/v1")
    assert cli("record", *IDS, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    swept = cli("sweep", cwd=workdir)
    assert swept.returncode == 1, swept.stderr
    assert _states(workdir) == {i: "failed" for i in IDS}
    return workdir


def _states(workdir: Path) -> dict[str, str]:
    """response_id -> state, read with `ls`."""
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)
    return {r["response_id"]: r["state"] for r in rows}


def _requeued_events(workdir: Path) -> list[dict[str, Any]]:
    """The response.requeued records of the audit file."""
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "response.requeued"]


def test_reason_is_required(failed: Path) -> None:
    """Without --reason nothing is requeued and the exit code is 2."""
    result = cli("retry", cwd=failed)
    assert result.returncode == 2 and "--reason" in result.stderr
    assert cli("retry", "--reason", "  ", cwd=failed).returncode == 2
    assert _states(failed) == {i: "failed" for i in IDS}


def test_dry_run_lists_and_changes_nothing(failed: Path) -> None:
    """--dry-run lists every failed ID with its last error and leaves the ledger alone."""
    result = cli("retry", "--reason", "fixed base_url", "--dry-run", cwd=failed)
    assert result.returncode == 0, result.stderr
    assert "would requeue 3 failed ID(s)" in result.stdout
    assert all(i in result.stdout for i in IDS) and "invalid response id" in result.stdout
    assert _states(failed) == {i: "failed" for i in IDS}
    assert _requeued_events(failed) == []


def test_named_ids_go_back_to_pending_with_their_event(failed: Path) -> None:
    """A named failed ID is pending again with no attempts, due now (its deadline is long
    past), and its response.requeued event carries the reason and the actor."""
    before = datetime.now(UTC)
    result = cli("retry", IDS[0], "--reason", "INC-7: fixed base_url", "-o", "json", cwd=failed)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["requeued"], data["dry_run"], data["not_failed"]) == (1, False, [])
    record = data["records"][0]
    assert (record["response_id"], record["state"]) == (IDS[0], "pending")
    assert (record["previous_attempts"], record["previous_status"]) == (1, 400)
    assert datetime.fromisoformat(record["due_at"]) >= before
    rows = {r["response_id"]: r for r in json.loads(cli("ls", "-o", "json", cwd=failed).stdout)}
    assert (rows[IDS[0]]["state"], rows[IDS[0]]["attempts"]) == ("pending", 0)
    assert rows[IDS[0]]["last_error"] is None
    assert {rows[i]["state"] for i in IDS[1:]} == {"failed"}
    (event,) = _requeued_events(failed)
    assert event["response_id"] == IDS[0] and event["details"]["reason"] == "INC-7: fixed base_url"
    assert event["details"]["previous_attempts"] == 1 and event["actor"]["pid"] > 0
    status = json.loads(cli("status", "-o", "json", cwd=failed).stdout)
    assert (status["states"]["pending"], status["states"]["failed"]) == (1, 2)


def test_retry_all_then_sweep_deletes_them(failed: Path, provider: Provider) -> None:
    """After the cause is fixed, `retry` of every failed ID and one sweep delete them all."""
    provider.delete_status = 200
    result = cli("retry", "--reason", "provider fixed", "--provider", "fireworks", cwd=failed)
    assert result.returncode == 0, result.stderr
    assert "requeued 3 failed ID(s)" in result.stdout
    assert len(_requeued_events(failed)) == 3
    swept = cli("sweep", cwd=failed)
    assert swept.returncode == 0, swept.stderr
    assert _states(failed) == {i: "deleted" for i in IDS}
    assert sorted(provider.deletes) == sorted(IDS * 2)
    again = cli("retry", "--reason", "again", cwd=failed)
    assert again.returncode == 0 and "requeued 0 failed ID(s)" in again.stdout


def test_filters_select_what_is_requeued(failed: Path) -> None:
    """--policy, --since (a date too) and a named ID that is not failed narrow the retry; an
    ID the ledger does not track is refused with exit 2 and nothing changes."""
    assert cli("record", "resp_fresh", cwd=failed).returncode == 0
    other = cli("retry", "--policy", "evals", "--reason", "x", cwd=failed)
    assert other.returncode == 0 and "requeued 0" in other.stdout
    later = cli("retry", "--since", ago(days=-1)[:10], "--reason", "x", cwd=failed)
    assert later.returncode == 0 and "requeued 0" in later.stdout, later.stderr
    unknown = cli("retry", IDS[1], "resp_never_seen", "--reason", "x", cwd=failed)
    assert unknown.returncode == 2 and "not tracked: resp_never_seen" in unknown.stderr
    mixed = cli("retry", IDS[1], "resp_fresh", "--reason", "x", "--since", ago(hours=1), cwd=failed)
    assert mixed.returncode == 0, mixed.stderr
    assert "resp_fresh (fireworks) is pending" in mixed.stderr
    assert _states(failed) == {
        IDS[0]: "failed",
        IDS[1]: "pending",
        IDS[2]: "failed",
        "resp_fresh": "pending",
    }


def test_retry_has_help(workdir: Path) -> None:
    """`retry --help` names the options, with no configuration present."""
    result = cli("retry", "--help", cwd=workdir)
    assert result.returncode == 0 and "--reason" in result.stdout and "--dry-run" in result.stdout
