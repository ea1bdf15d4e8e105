"""Fixtures of the compatibility suite: one real Llama Stack 0.7.x for the whole session, and
the figures each test reports, printed at the end of the run."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from compat.llamastack import Unavailable, start_llamastack
from tests.compat.support import FIGURES, KEYS, LlamaStack, warm_up


def pytest_configure(config: pytest.Config) -> None:
    """Register the `compat` marker (the project runs pytest with --strict-markers)."""
    config.addinivalue_line(
        "markers", "compat: runs against a real Llama Stack server (tests/compat, .ci/compat)"
    )


@pytest.fixture(scope="session")
def llamastack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaStack]:
    """One Llama Stack on loopback for the session (keys: key-alice, key-bob); skipped, in
    one line, where it cannot be installed (no Python >= 3.12, no package registry)."""
    workdir = tmp_path_factory.mktemp("llamastack")
    started = time.monotonic()
    try:
        with start_llamastack(workdir, auth=KEYS) as base_url:
            server = LlamaStack(base_url=base_url, workdir=workdir)
            warm_up(server)
            FIGURES.append(f"llama stack up in {time.monotonic() - started:.1f}s at {base_url}")
            yield server
    except Unavailable as exc:
        pytest.skip(f"Llama Stack unavailable: {exc}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the tests reported, one line each."""
    if FIGURES:
        terminalreporter.section("compat figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
