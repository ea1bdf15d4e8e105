"""Issue 12's acceptance for outcomes that are true: a misconfigured or unreachable provider
stops before any DELETE and charges no ID; an outage mid-sweep fails no ID; the daemon probes
at start and /readyz names a failing provider."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.http_router import free_port, html_404, json_404
from tests.helpers import (
    LONG_AGO,
    STANDIN_ARGS,
    ago,
    cli,
    seed,
    standin_requests,
    user_env,
    write_config,
)

BLIND_KEY = "blind-key"
POLICIES = "version: 1\ndefault:\n  ttl: 1h\n"
IDS = [f"resp_p{i}" for i in range(6)]


def _standin(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The stand-in as its own process; its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", *args], stdout=subprocess.PIPE, text=True
    )
    return proc, proc.stdout.readline().strip()  # type: ignore[union-attr]


@pytest.fixture
def standin_url() -> Iterator[str]:
    """A stand-in with no account check, and a second key that sees nothing."""
    proc, url = _standin("--blind-key", BLIND_KEY)
    yield url
    proc.terminate()
    proc.wait(10)


def _rows(workdir: Path) -> list[dict[str, object]]:
    """`retention ls -o json`."""
    return json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)  # type: ignore[no-any-return]


def _configure(workdir: Path, base_url: str, kind: str = "fireworks") -> None:
    """A config for `kind` at `base_url`."""
    write_config(workdir, base_url, policies=POLICIES, kind=kind)


BROKEN = {
    "base_url without /v1": ("root", "fireworks", "provider.misconfigured", "answered 404"),
    "wrong port": ("closed", "fireworks", "provider.unreachable", "is the port right"),
    "https to plain http": ("https", "fireworks", "provider.unreachable", "TLS failed"),
    "proxy answering HTML 404": ("html", "fireworks", "provider.misconfigured", "answered 404"),
    "FastAPI JSON 404, kind openai": ("json", "openai", "provider.misconfigured", "/models"),
    "key that sees nothing": ("blind", "fireworks", "provider.misconfigured", "cannot see"),
}


@pytest.fixture(params=list(BROKEN), ids=list(BROKEN))
def broken(
    request: pytest.FixtureRequest, workdir: Path, standin_url: str
) -> Iterator[tuple[str, dict[str, str], str, str]]:
    """One broken setup with six due IDs recorded: (kind, env, event, reason fragment)."""
    how, kind, event, fragment = BROKEN[request.param]
    routers = {"html": html_404(), "json": json_404()}
    port = standin_url.rsplit(":", 1)[1].split("/")[0]
    urls = {
        "root": standin_url.removesuffix("/v1"),
        "closed": f"http://127.0.0.1:{free_port()}/v1",
        "https": f"https://127.0.0.1:{port}/v1",
        "blind": standin_url,
        **{name: r.base_url for name, r in routers.items()},
    }
    seed(standin_url, [{"id": i} for i in IDS])
    _configure(workdir, urls[how], kind)
    (workdir / "ids.jsonl").write_text(
        "".join(json.dumps({"id": i, "created_at": ago(days=2)}) + "\n" for i in IDS)
    )
    assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
    env = {"FW_TEST_KEY": BLIND_KEY} if how == "blind" else {}
    yield kind, env, event, fragment
    for router in routers.values():
        router.close()


def test_broken_setup_charges_nothing_then_one_sweep_deletes_all(
    broken: tuple[str, dict[str, str], str, str], workdir: Path, standin_url: str
) -> None:
    """A broken setup: exit 1, its event names the reason, every ID still pending with 0
    attempts and no DELETE reached the API; after the fix one sweep deletes them all."""
    kind, env, event, fragment = broken
    result = cli("sweep", cwd=workdir, env=env)
    assert result.returncode == 1, result.stderr
    assert f"{event}: " in result.stderr and fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert {(r["state"], r["attempts"]) for r in _rows(workdir)} == {("pending", 0)}
    assert not [r for r in standin_requests(standin_url) if r["method"] == "DELETE"]
    trail = (workdir / "audit.jsonl").read_text()
    assert f'"event": "{event}"' in trail or f'"event":"{event}"' in trail

    _configure(workdir, standin_url, kind)
    fixed = cli("sweep", cwd=workdir)
    assert fixed.returncode == 0, fixed.stderr
    assert {r["state"] for r in _rows(workdir)} == {"deleted"}


def _knobs(url: str, **values: float) -> None:
    """Turn the stand-in's fault knobs."""
    root = url.removesuffix("/v1")
    request = urllib.request.Request(
        f"{root}/_standin/knobs", method="POST", data=json.dumps(values).encode()
    )
    urllib.request.urlopen(request, timeout=10).read()


def test_twenty_second_outage_mid_sweep_fails_no_id(workdir: Path) -> None:
    """Every connection drops for 20 s in the middle of a 1,000-ID sweep: the provider pauses,
    no ID is failed or charged, and later sweeps delete them all (each attempt counted once)."""
    proc, url = _standin(*STANDIN_ARGS, "--latency-ms", "25")
    try:
        write_config(workdir, url)
        ids = [f"resp_o{i}" for i in range(1000)]
        seed(url, [{"id": i} for i in ids])
        (workdir / "ids.jsonl").write_text(
            "".join(json.dumps({"id": i, "created_at": LONG_AGO}) + "\n" for i in ids)
        )
        assert cli("import", "ids.jsonl", cwd=workdir).returncode == 0
        sweep = subprocess.Popen(
            [sys.executable, "-m", "retention", "sweep"],
            cwd=workdir,
            env=user_env(),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        while len([r for r in standin_requests(url) if r["method"] == "DELETE"]) < 200:
            assert sweep.poll() is None, "the sweep ended before the outage"
            time.sleep(0.05)
        _knobs(url, drop_rate=1.0)
        outage_ends = time.monotonic() + 20
        _, stderr = sweep.communicate(timeout=60)
        assert sweep.returncode == 1 and "provider.unreachable" in stderr, stderr
        rows = _rows(workdir)
        assert "failed" not in {r["state"] for r in rows}
        assert {r["attempts"] for r in rows if r["state"] == "pending"} == {0}
        assert 200 <= sum(r["state"] == "deleted" for r in rows) < 1000

        during = cli("sweep", cwd=workdir)  # the probe stops it: nothing sent, nothing charged
        assert during.returncode == 1 and "provider.unreachable" in during.stderr
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        _knobs(url, drop_rate=0.0)
        after = cli("sweep", cwd=workdir)
        assert after.returncode == 0, after.stderr
        assert {(r["state"], r["attempts"]) for r in _rows(workdir)} == {("deleted", 1)}
    finally:
        proc.terminate()
        proc.wait(10)


DAEMON_EXTRA = "sweep:\n  interval: 1s\n  shutdown_grace: 10s\nserver:\n  listen: 127.0.0.1:0\n"


def test_daemon_probes_at_start_and_readyz_names_the_failing_provider(workdir: Path) -> None:
    """`run` logs its start probe; /readyz answers 503 naming a provider whose probe failed,
    and 200 again once a later probe passes; the daemon keeps running throughout."""
    proc, url = _standin(*STANDIN_ARGS, "--drop-rate", "1")
    write_config(workdir, url, extra=DAEMON_EXTRA)
    daemon = DaemonProcess(workdir, {})
    try:
        _wait(lambda: "fireworks" in daemon.request("/readyz")[1])  # not just "starting"
        status, body = daemon.request("/readyz")
        assert status == 503 and "fireworks" in json.loads(body)["error"]
        assert json.loads(body)["providers"]["fireworks"]["event"] == "provider.unreachable"
        assert daemon.events("provider.unreachable"), "the start probe is logged"
        _knobs(url, drop_rate=0.0)
        _wait(lambda: daemon.request("/readyz")[0] == 200)
        assert daemon.events("provider.probe_passed")
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        proc.terminate()
        proc.wait(10)


def _wait(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` until true, or fail after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_port_in_use_is_one_line_and_exit_2(workdir: Path, standin_process: str) -> None:
    """The daemon's port already taken: one line naming the address, exit 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        write_config(workdir, standin_process, extra=f"server:\n  listen: 127.0.0.1:{port}\n")
        result = cli("run", cwd=workdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"retention: error: cannot listen on 127.0.0.1:{port}: address already in use "
        f"(server.listen in retention.yaml; is another daemon running?)"
    ]
