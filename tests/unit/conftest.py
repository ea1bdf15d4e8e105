"""Fixtures shared by the pure tests."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog

from retention import logs


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """structlog writing JSON lines to a buffer; the defaults restored after."""
    stream = io.StringIO()
    logs.configure(stream, level="debug", json=True)
    yield stream
    structlog.reset_defaults()
