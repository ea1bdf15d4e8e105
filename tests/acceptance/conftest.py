"""Fixtures of the acceptance tests: systemd's notify socket, and daemons run as users run
them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.daemon_helpers import DaemonProcess, NotifySocket
from tests.acceptance.flood_helpers import SERVER, TOKEN, wait_healthy
from tests.helpers import write_config


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """A stand-in for systemd's notify socket."""
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def start(workdir: Path, standin_process: str) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons against the stand-in (`extra` config, a descriptor limit), healthy before
    they are handed over (with TLS, as soon as they listen); killed after."""
    started: list[DaemonProcess] = []

    def launch(extra: str = SERVER, nofile: int | None = None) -> DaemonProcess:
        write_config(workdir, standin_process, extra=extra)
        daemon = DaemonProcess(workdir, {"RETENTION_INGEST_TOKEN": TOKEN}, nofile=nofile)
        started.append(daemon)
        if "tls_cert_file" not in extra:
            wait_healthy(daemon)
        return daemon

    yield launch
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
