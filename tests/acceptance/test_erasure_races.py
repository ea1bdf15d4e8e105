"""Issue 15's races: an erasure that arrives mid-sweep, in a 429 storm, across a daemon
restart, and on two PostgreSQL replicas completes, deletes nothing twice, and leaves one
terminal event per ID."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.flood_helpers import TOKEN, wait_healthy
from tests.helpers import LONG_AGO, auditor_verify, cli, seed, standin_requests, write_config

A, B, C = "subject-a-51c0de", "subject-b-0a77e2", "subject-c-c4f81b"
TERMINAL = ("response.deleted", "response.absent", "response.failed")


def _daemon_config(interval: str = "60s") -> str:
    """The daemon's part of retention.yaml: sweeps every `interval`, ingest and erasures on."""
    return (
        f"sweep:\n  interval: {interval}\n  batch_size: 200\ndiscover:\n  interval: 0s\n"
        "server:\n  listen: 127.0.0.1:0\n"
    )


@pytest.fixture
def daemons(workdir: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start `retention run` in the work directory (healthy when handed over); killed after."""
    started: list[DaemonProcess] = []

    def launch(env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN, **(env or {})})
        started.append(daemon)
        wait_healthy(daemon)
        return daemon

    yield launch
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def _knobs(base_url: str, **values: float) -> None:
    """Turn the stand-in's fault and latency knobs."""
    root = base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(
        f"{root}/_standin/knobs", method="POST", data=json.dumps(values).encode()
    )
    urllib.request.urlopen(request, timeout=10).read()


def _track(
    workdir: Path,
    base_url: str,
    groups: dict[str, tuple[str, int, bool]],
    env: dict[str, str] | None = None,
) -> dict[str, list[str]]:
    """Seed the stand-in and import the records of each group (prefix: subject, count, long
    due or young); their IDs by prefix."""
    ids = {
        prefix: [f"{prefix}{i}" for i in range(count)] for prefix, (_, count, _) in groups.items()
    }
    seed(base_url, [{"id": rid} for group in ids.values() for rid in group])
    lines = []
    for prefix, (subject, _, due) in groups.items():
        extra = {"created_at": LONG_AGO} if due else {}
        lines += [{"id": rid, "metadata": {"user_id": subject}, **extra} for rid in ids[prefix]]
    (workdir / "ids.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = cli("import", "ids.jsonl", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    return ids


def _deletes(base_url: str) -> list[tuple[str, int]]:
    """Every DELETE the stand-in answered: (response ID, status)."""
    return [
        (r["path"].rsplit("/", 1)[1], r["status"])
        for r in standin_requests(base_url)
        if r["method"] == "DELETE"
    ]


def _wait_for(what: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Whether `what()` turns true within `timeout` seconds."""
    end = time.monotonic() + timeout
    while not what():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def _first_sweep(daemon: DaemonProcess) -> None:
    """Wait for the daemon's start-up sweep to end."""
    assert _wait_for(lambda: bool(daemon.events("sweep.done")), 20), "the start-up sweep ran"


def _erase(daemon: DaemonProcess, subject: str) -> dict[str, Any]:
    """POST /v1/erasures for `subject`; the 202's body."""
    code, text = daemon.request(
        "/v1/erasures", token=TOKEN, body={"subject": {"user_id": subject}, "reason": "DSR"}
    )
    assert code == 202, text
    return dict(json.loads(text))


def _progress(daemon: DaemonProcess, erasure_id: str) -> dict[str, Any]:
    """GET /v1/erasures/{id}."""
    code, text = daemon.request(f"/v1/erasures/{erasure_id}", token=TOKEN)
    assert code == 200, text
    return dict(json.loads(text))


def _completed(daemon: DaemonProcess, erasure_id: str, timeout: float) -> dict[str, Any]:
    """The request's progress once it completed (fails when it does not within `timeout`)."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(_progress(daemon, erasure_id))
        return bool(seen["state"] == "completed")

    assert _wait_for(done, timeout, step=0.2), seen
    return seen


def _terminal(lines: list[str]) -> Counter[str]:
    """Terminal events per response ID in an audit trail's lines."""
    events = (json.loads(line) for line in lines if line.strip())
    return Counter(e["response_id"] for e in events if e["event"] in TERMINAL)


def _terminal_events(lines: list[str], ids: list[str]) -> list[dict[str, Any]]:
    """The terminal events of `ids`."""
    wanted = set(ids)
    events = (json.loads(line) for line in lines if line.strip())
    return [e for e in events if e["event"] in TERMINAL and e["response_id"] in wanted]


def test_erasure_while_a_sweep_runs(
    workdir: Path, standin_process: str, daemons: Callable[..., DaemonProcess]
) -> None:
    """1,200 due records of B and C being deleted by a slow provider when A's erasure
    arrives: it completes, no ID gets two DELETEs, every ID one terminal event."""
    base = standin_process
    _knobs(base, latency_ms=40)
    write_config(workdir, base, extra=_daemon_config())
    ids = _track(workdir, base, {"b": (B, 600, True), "c": (C, 600, True), "a": (A, 150, False)})
    daemon = daemons()  # its start-up sweep takes the 1,200 due ones
    assert _wait_for(lambda: len(_deletes(base)) >= 200, 20)
    assert not daemon.events("sweep.done"), "the sweep still runs"
    answer = _erase(daemon, A)
    answered_at_post = len(_deletes(base))
    assert answered_at_post < 1200 and answer["due"] == 150
    progress = _completed(daemon, answer["erasure_id"], 25)
    assert progress["counts"]["deleted"] == 150 and progress["counts"]["pending"] == 0
    everyone = ids["a"] + ids["b"] + ids["c"]
    assert _wait_for(lambda: len(_deletes(base)) >= len(everyone), 20)
    assert daemon.stop() == 0
    print(f"\nDELETEs answered when the erasure was posted: {answered_at_post} of 1,200")
    deletes = Counter(rid for rid, _ in _deletes(base))
    assert set(deletes) == set(everyone) and max(deletes.values()) == 1, deletes.most_common(3)
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    terminal = _terminal(lines)
    assert {rid: terminal[rid] for rid in everyone} == dict.fromkeys(everyone, 1)
    for event in _terminal_events(lines, ids["a"]):
        assert event["event"] == "response.deleted"
        assert event["details"]["erasure_id"] == answer["erasure_id"]
    assert auditor_verify(workdir / "audit.jsonl") == len(lines)


def test_erasure_through_a_429_storm(
    workdir: Path, standin_process: str, daemons: Callable[..., DaemonProcess]
) -> None:
    """The provider answers most requests 429 (Retry-After 1) while the erasure runs, until
    it has throttled 150 DELETEs: the erasure completes once the storm stops, each of A's IDs
    deleted by exactly one DELETE that succeeded, none of B's touched, one terminal event
    each. (Sweeps every 2 s: a sweep whose probe meets the storm stops before any DELETE.)"""
    base = standin_process
    write_config(workdir, base, extra=_daemon_config("2s"))
    ids = _track(workdir, base, {"a": (A, 150, False), "b": (B, 50, False)})
    daemon = daemons()
    _first_sweep(daemon)
    _knobs(base, rate_429=0.7, retry_after=1)
    posted = time.monotonic()
    answer = _erase(daemon, A)
    assert answer["due"] == 150

    def stormed() -> bool:
        return sum(1 for _, status in _deletes(base) if status == 429) >= 150

    assert _wait_for(stormed, 15, step=0.1), "the storm reached the DELETEs"
    assert _progress(daemon, answer["erasure_id"])["state"] == "open"
    _knobs(base, rate_429=0)
    progress = _completed(daemon, answer["erasure_id"], 25)
    took = time.monotonic() - posted
    assert daemon.stop() == 0
    assert progress["counts"]["deleted"] == 150 and progress["counts"]["failed"] == 0
    deletes = _deletes(base)
    throttled = sum(1 for _, status in deletes if status == 429)
    answered = Counter(rid for rid, status in deletes if status != 429)
    print(f"\n429 storm: {throttled} DELETEs throttled; completed {took:.1f} s after the POST")
    assert set(answered) == set(ids["a"]), "none of B's"
    assert max(answered.values()) == 1, answered.most_common(3)
    assert {rid for rid, status in deletes if status == 200} == set(ids["a"])
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    terminal = _terminal(lines)
    assert {rid: terminal[rid] for rid in ids["a"]} == dict.fromkeys(ids["a"], 1)
    assert not any(terminal[rid] for rid in ids["b"])
    assert {e["event"] for e in _terminal_events(lines, ids["a"])} == {"response.deleted"}
    assert cli("audit", "verify", cwd=workdir).returncode == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_erasure_across_a_daemon_restart(
    workdir: Path,
    standin_process: str,
    daemons: Callable[..., DaemonProcess],
    stop: signal.Signals,
) -> None:
    """The daemon is stopped (SIGTERM, or killed) part way through an erasure and started
    again: the erasure completes, no ID is deleted twice, each has one terminal event, and
    `retention audit verify` passes."""
    base = standin_process
    _knobs(base, latency_ms=60)
    write_config(workdir, base, extra=_daemon_config())
    ids = _track(workdir, base, {"a": (A, 600, False), "b": (B, 50, False)})
    first = daemons()
    _first_sweep(first)
    answer = _erase(first, A)
    assert _wait_for(lambda: len(_deletes(base)) >= 100, 20)
    first.proc.send_signal(stop)
    code = first.proc.wait(40)
    at_stop = len(_deletes(base))
    assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL), (
        code,
        first.stderr[-5:],
        first.lines[-5:],
    )
    assert at_stop < 600, "stopped part way"
    second = daemons()
    try:
        progress = _completed(second, answer["erasure_id"], 25)
    except AssertionError as exc:  # say what the stopped daemon did to the records left
        noted = [line for d in (first, second) for line in d.lines if line.get("level") != "info"]
        raise AssertionError(f"{exc}; warnings and errors: {noted[:10]}") from None
    assert second.stop() == 0
    print(f"\n{stop.name}: {at_stop} of 600 DELETEs answered before the stop")
    counts = progress["counts"]
    assert counts["deleted"] + counts["absent"] == 600 and counts["failed"] == 0, counts
    deletes = _deletes(base)
    succeeded = Counter(rid for rid, status in deletes if status == 200)
    assert set(succeeded) == set(ids["a"]) and max(succeeded.values()) == 1
    answered = Counter(rid for rid, _ in deletes)
    assert set(answered) == set(ids["a"]), "none of B's"
    if stop == signal.SIGTERM:  # a clean stop records every answer it got: nothing sent again
        assert max(answered.values()) == 1, answered.most_common(3)
        assert counts["deleted"] == 600
    lines = (workdir / "audit.jsonl").read_text().splitlines()
    terminal = _terminal(lines)
    assert {rid: terminal[rid] for rid in ids["a"]} == dict.fromkeys(ids["a"], 1)
    assert not any(terminal[rid] for rid in ids["b"])
    assert auditor_verify(workdir / "audit.jsonl") == len(lines)
    verified = cli("audit", "verify", cwd=workdir)
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.fixture
def replicas(
    workdir: Path, pg_url: str, daemons: Callable[..., DaemonProcess]
) -> Callable[[], tuple[dict[str, str], list[DaemonProcess]]]:
    """Two daemons on one PostgreSQL ledger, each writing its own audit chain; the
    environment commands use."""

    def launch() -> tuple[dict[str, str], list[DaemonProcess]]:
        env = {"RETENTION_DATABASE_URL": pg_url.replace("postgresql+psycopg://", "postgresql://")}
        pair = [daemons({**env, "RETENTION_AUDIT_CHAIN": f"replica-{n}"}) for n in (1, 2)]
        for daemon in pair:
            _first_sweep(daemon)
        return env, pair

    return launch


def _check_replicated_trail(workdir: Path, env: dict[str, str], erased: list[str]) -> None:
    """One terminal event per erased ID in the shared trail, and the export verifies."""
    assert cli("audit", "export", "--out", "ex.jsonl", cwd=workdir, env=env).returncode == 0
    lines = (workdir / "ex.jsonl").read_text().splitlines()
    terminal = _terminal(lines)
    assert {rid: terminal[rid] for rid in erased} == dict.fromkeys(erased, 1)
    (workdir / "pub.pem").write_text(cli("audit", "pubkey", cwd=workdir, env=env).stdout)
    result = cli("audit", "verify", "ex.jsonl", "--pubkey", "pub.pem", cwd=workdir, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.postgres
def test_erasure_on_two_postgres_replicas(
    workdir: Path,
    standin_process: str,
    pg_url: str,
    replicas: Callable[[], tuple[dict[str, str], list[DaemonProcess]]],
) -> None:
    """POST /v1/erasures to one of two replicas: it completes (the other replica reports it
    so), every one of A's IDs got exactly one DELETE, none of B's any."""
    base = standin_process
    _knobs(base, latency_ms=20)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    env = {"RETENTION_DATABASE_URL": plain}
    write_config(workdir, base, extra=_daemon_config())
    assert cli("db", "upgrade", cwd=workdir, env=env).returncode == 0
    ids = _track(workdir, base, {"a": (A, 300, False), "b": (B, 100, False)}, env=env)
    env, (one, other) = replicas()
    answer = _erase(one, A)
    progress = _completed(other, answer["erasure_id"], 25)
    assert progress["counts"]["deleted"] == 300 and progress["counts"]["pending"] == 0
    assert [d.stop() for d in (one, other)] == [0, 0]
    deletes = Counter(rid for rid, _ in _deletes(base))
    assert set(deletes) == set(ids["a"]) and max(deletes.values()) == 1, deletes.most_common(3)
    _check_replicated_trail(workdir, env, ids["a"])


@pytest.mark.postgres
def test_erasure_retried_on_the_other_replica(
    workdir: Path,
    standin_process: str,
    pg_url: str,
    replicas: Callable[[], tuple[dict[str, str], list[DaemonProcess]]],
) -> None:
    """The same person's request sent again to the second replica while the first deletes:
    both replicas sweep the same records at once, both requests complete, and still no ID
    gets two DELETEs."""
    base = standin_process
    _knobs(base, latency_ms=40)
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    env = {"RETENTION_DATABASE_URL": plain}
    write_config(workdir, base, extra=_daemon_config())
    assert cli("db", "upgrade", cwd=workdir, env=env).returncode == 0
    ids = _track(workdir, base, {"a": (A, 600, False), "b": (B, 100, False)}, env=env)
    env, (one, other) = replicas()
    first = _erase(one, A)
    assert _wait_for(lambda: len(_deletes(base)) >= 50, 20)
    again = _erase(other, A)
    at_retry = len(_deletes(base))
    assert again["due"] > 0 and at_retry < 600, (again, at_retry)
    for daemon, answer in ((other, first), (one, again)):
        _completed(daemon, answer["erasure_id"], 25)
    assert [d.stop() for d in (one, other)] == [0, 0]
    print(f"\nretried on the other replica after {at_retry} of 600 DELETEs")
    deletes = Counter(rid for rid, _ in _deletes(base))
    assert set(deletes) == set(ids["a"]) and max(deletes.values()) == 1, deletes.most_common(3)
    _check_replicated_trail(workdir, env, ids["a"])
