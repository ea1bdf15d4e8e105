"""Fixtures: the time, a stand-in on loopback, a working directory with a config."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from retention.standin import StandIn
from retention.standin.server import Knobs
from tests.helpers import ACCOUNT, FLAVOR

# Two cores shared with the stand-in and xdist workers: generation time is not a property.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("shared-machine")

SERVER = os.environ.get("RETENTION_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def now() -> datetime:
    """A fixed, aware moment."""
    return datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    """The provider stand-in serving on 127.0.0.1 from a background thread."""
    server = StandIn(api_key="test-key", account=ACCOUNT, seed=7, knobs=Knobs(flavor=FLAVOR))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def standin_process() -> Iterator[str]:
    """The provider stand-in as its own process (`python -m retention.standin`); its URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retention.standin",
            "--flavor",
            FLAVOR,
            *(["--account", ACCOUNT] if ACCOUNT else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the test server; dropped afterwards."""
    admin_url = SERVER.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"retention_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        if os.environ.get("RETENTION_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {SERVER}: {type(exc).__name__}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory for one test's files."""
    return tmp_path
