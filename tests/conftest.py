"""Fixtures: the time, a stand-in on loopback, a working directory with a config."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retention.standin import StandIn


@pytest.fixture
def now() -> datetime:
    """A fixed, aware moment."""
    return datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """The provider stand-in serving on 127.0.0.1 from a background thread."""
    server = StandIn(api_key="test-key", account="acme", seed=7).start()
    yield server
    server.stop()


@pytest.fixture
def standin_process() -> Iterator[str]:
    """The provider stand-in as its own process (`python -m retention.standin`); its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention.standin", "--account", "acme"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory for one test's files."""
    return tmp_path
