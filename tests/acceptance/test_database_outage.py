"""The database goes away for 30 seconds: the daemon lives, is not ready, then carries on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess
from tests.acceptance.tcp_proxy import Proxy
from tests.helpers import LONG_AGO, cli, seed, standin_requests, write_config

pytestmark = pytest.mark.postgres


def _wait_for(predicate, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    """Poll until `predicate()` or the timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_database_outage(pg_url: str, workdir: Path, standin_process: str) -> None:
    """During the outage /healthz 200 and /readyz 503; afterwards new work is deleted."""
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    host_port, database = plain.split("@", 1)[1].split("/", 1)
    host, port = host_port.split(":")
    proxy = Proxy(host, int(port))
    via_proxy = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    env = {"RETENTION_DATABASE_URL": via_proxy}
    write_config(
        workdir, standin_process, extra="sweep:\n  interval: 1s\nserver:\n  listen: 127.0.0.1:0\n"
    )
    assert cli("db", "upgrade", cwd=workdir, env=env).returncode == 0
    daemon = DaemonProcess(workdir, env)
    try:
        assert _wait_for(lambda: daemon.request("/readyz")[0] == 200)
        proxy.down()
        assert _wait_for(lambda: daemon.request("/readyz")[0] == 503)
        time.sleep(30)
        assert daemon.request("/healthz")[0] == 200 and daemon.proc.poll() is None
        proxy.up()
        assert _wait_for(lambda: daemon.request("/readyz")[0] == 200)
        seed(standin_process, [{"id": "after_outage"}])
        assert (
            cli(
                "record",
                "after_outage",
                "--created-at",
                LONG_AGO,
                cwd=workdir,
                env=env,
            ).returncode
            == 0
        )
        assert _wait_for(
            lambda: any(
                r["path"].endswith("/after_outage") for r in standin_requests(standin_process)
            )
        )
    finally:
        assert daemon.stop() == 0
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir, env=env).stdout)
    assert [r["state"] for r in rows] == ["deleted"]
