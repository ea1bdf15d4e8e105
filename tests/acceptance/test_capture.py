"""Issue 5's capture: an app on the real openai SDK, instrumented, with the daemon up or down."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import cli, write_config

pytest.importorskip("openai")
TOKEN = "capture-token"

APP = """
import asyncio, json, sys, time
from pathlib import Path
from openai import AsyncOpenAI, OpenAI
import retention.capture

base, ingest, spool = sys.argv[1], sys.argv[2], Path(sys.argv[3])
kw = dict(ingest_url=ingest, token="capture-token", provider="fireworks", spool_path=spool)
client = retention.capture.instrument(OpenAI(base_url=base, api_key="test-key",
    default_headers={"x-fireworks-account-id": "acme"}), **kw)
aclient = retention.capture.instrument(AsyncOpenAI(base_url=base, api_key="test-key",
    default_headers={"x-fireworks-account-id": "acme"}), **kw)
ids = {}
started = time.perf_counter()
ids["plain"] = client.responses.create(model="m", input="hi").id
with client.responses.create(model="m", input="hi", stream=True) as stream:
    for event in stream:
        if event.type == "response.created":
            ids["streamed"] = event.response.id
ids["async"] = asyncio.run(aclient.responses.create(model="m", input="hi")).id
ids["unstored"] = client.responses.create(model="m", input="hi", store=False).id
ids["elapsed_s"] = time.perf_counter() - started
print(json.dumps(ids), flush=True)
deadline = time.monotonic() + float(sys.argv[4])
while time.monotonic() < deadline and (not spool.exists() or spool.stat().st_size):
    time.sleep(0.1)
"""


def _free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ledger_ids(workdir: Path) -> set[str]:
    """Response IDs in the ledger."""
    return {r["response_id"] for r in json.loads(cli("ls", "-o", "json", cwd=workdir).stdout)}


@pytest.fixture
def setup(workdir: Path, standin_process: str) -> tuple[Path, str, int]:
    """A config for a daemon on a fixed port, and the app's source."""
    port = _free_port()
    write_config(
        workdir,
        standin_process,
        extra=f"sweep:\n  interval: 60s\nserver:\n  listen: 127.0.0.1:{port}\n",
    )
    (workdir / "app.py").write_text(APP)
    return workdir, standin_process, port


def _app(workdir: Path, base: str, port: int, wait_s: float) -> subprocess.Popen[str]:
    """Start the app."""
    return subprocess.Popen(
        [
            sys.executable,
            "app.py",
            base,
            f"http://127.0.0.1:{port}",
            str(workdir / "spool.jsonl"),
            str(wait_s),
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_exactly_the_stored_ids_reach_the_ledger(setup: tuple[Path, str, int]) -> None:
    """Plain, streamed and async calls are recorded; the store=False one is not."""
    workdir, base, port = setup
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        app = _app(workdir, base, port, 5)
        out, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
        ids = json.loads(out)
        for _ in range(50):
            if _ledger_ids(workdir) >= {ids["plain"], ids["streamed"], ids["async"]}:
                break
            time.sleep(0.1)
        assert _ledger_ids(workdir) == {ids["plain"], ids["streamed"], ids["async"]}
    finally:
        daemon.stop()


def test_app_works_without_the_daemon_and_ids_arrive_later(setup: tuple[Path, str, int]) -> None:
    """With the daemon down the app still works; its IDs arrive once the daemon is back."""
    workdir, base, port = setup
    app = _app(workdir, base, port, 40)
    first = app.stdout.readline()  # type: ignore[union-attr]
    ids = json.loads(first)
    assert ids["elapsed_s"] < 10
    for _ in range(50):
        if (workdir / "spool.jsonl").exists() and (workdir / "spool.jsonl").stat().st_size:
            break
        time.sleep(0.1)
    assert (workdir / "spool.jsonl").stat().st_mode & 0o777 == 0o600
    daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN})
    try:
        app.wait(60)
        assert _ledger_ids(workdir) == {ids["plain"], ids["streamed"], ids["async"]}
        assert (workdir / "spool.jsonl").stat().st_size == 0
    finally:
        daemon.stop()
