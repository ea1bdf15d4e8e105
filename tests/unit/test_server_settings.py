"""The `server` section: listen address and port range, connection limits, the TLS pair."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from retention.config.settings import load_settings, split_listen
from retention.daemon.fdlimit import connection_cap
from retention.errors import ConfigError
from tests.helpers import write_config


def _load(tmp_path: Path, server: str) -> object:
    """Settings whose `server` section is `server` (indented lines)."""
    return load_settings(write_config(tmp_path, "https://fw.test/v1", extra=f"server:\n{server}"))


def _refused(tmp_path: Path, server: str) -> str:
    """The one-line error a `server` section is refused with."""
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, server)
    return caught.value.message


def test_defaults(tmp_path: Path) -> None:
    """Without the keys: 10s head, 30s body, 15s keep-alive, 256 connections, no TLS."""
    server = load_settings(write_config(tmp_path, "https://fw.test/v1")).server
    assert (server.header_timeout, server.body_timeout, server.keepalive_timeout) == (
        timedelta(seconds=10),
        timedelta(seconds=30),
        timedelta(seconds=15),
    )
    assert server.max_connections == 256
    assert server.tls_cert_file is None and server.tls_key_file is None


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8787", ("127.0.0.1", 8787)),
        ("[::1]:65535", ("::1", 65535)),
        (":80", ("127.0.0.1", 80)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),  # any free port: what tests listen on
    ],
)
def test_listen_forms(listen: str, expected: tuple[str, int]) -> None:
    """`host:port` forms that are accepted."""
    assert split_listen(listen) == expected


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("127.0.0.1:99999", "the port must be from 1 to 65535"),
        ("127.0.0.1:65536", "the port must be from 1 to 65535"),
        ("localhost", "expected host:port"),
        ("127.0.0.1:-1", "expected host:port"),
        ("127.0.0.1:８０", "expected host:port"),
        ("127.0.0.1:" + "9" * 5000, "expected host:port"),
        ("8787", "expected host:port"),
    ],
)
def test_bad_listen_is_refused_at_load(tmp_path: Path, listen: str, message: str) -> None:
    """A port out of range or a value that is no `host:port` names file, line and key."""
    text = _refused(tmp_path, f'  listen: "{listen}"\n')
    assert text.startswith(f"{tmp_path / 'retention.yaml'}:9: server.listen: {message}")
    assert len(text) < 300


def test_listen_must_be_a_string(tmp_path: Path) -> None:
    """A number (a forgotten host) is refused, not turned into a string."""
    assert "server.listen: expected host:port, got 8787" in _refused(tmp_path, "  listen: 8787\n")


def test_limits_are_read(tmp_path: Path) -> None:
    """Timeouts are durations, the cap an integer."""
    server = _load(
        tmp_path,
        "  header_timeout: 2s\n  body_timeout: 1m\n  keepalive_timeout: 5s\n"
        "  max_connections: 1000\n",
    ).server  # type: ignore[attr-defined]
    assert server.header_timeout == timedelta(seconds=2)
    assert server.body_timeout == timedelta(minutes=1)
    assert server.keepalive_timeout == timedelta(seconds=5)
    assert server.max_connections == 1000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("header_timeout: 0", "server.header_timeout: expected a duration above 0"),
        ("body_timeout: 2h", "server.body_timeout: at most 1h"),
        ("keepalive_timeout: soon", "server.keepalive_timeout: invalid duration"),
        ("max_connections: 0", "server.max_connections: expected an integer from 1 to 65536"),
        ("max_connections: many", "server.max_connections: expected an integer"),
        ("max_conections: 5", "server.max_conections: unknown key"),
    ],
)
def test_bad_limits_are_refused(tmp_path: Path, line: str, message: str) -> None:
    """Each bad limit is one line naming file, line and key."""
    assert f"retention.yaml:9: {message}" in _refused(tmp_path, f"  {line}\n")


def test_tls_files_come_in_pairs(tmp_path: Path) -> None:
    """A certificate without a key (or the reverse) names the missing key."""
    assert "server.tls_key_file: give both" in _refused(tmp_path, "  tls_cert_file: c.pem\n")
    assert "server.tls_cert_file: give both" in _refused(tmp_path, "  tls_key_file: k.pem\n")
    both = _load(tmp_path, "  tls_cert_file: c.pem\n  tls_key_file: k.pem\n").server  # type: ignore[attr-defined]
    assert both.tls_cert_file == tmp_path / "c.pem" and both.tls_key_file == tmp_path / "k.pem"
    assert both.key_lines == {"tls_cert_file": 9, "tls_key_file": 10}


@pytest.mark.parametrize(
    ("wanted", "limit", "in_use", "expected"),
    [
        (256, None, 30, (256, 64)),  # no descriptor limit
        (256, 65536, 30, (256, 64)),
        (256, 128, 30, (30, 4)),  # 128 - 30 open - 64 reserved = 34: 30 open, 4 closing
        (256, 64, 30, (1, 1)),  # never below one
    ],
)
def test_connection_cap_fits_the_descriptor_limit(
    wanted: int, limit: int | None, in_use: int, expected: tuple[int, int]
) -> None:
    """The cap is lowered so connections (open and closing), open files and the reserve stay
    under the descriptor limit."""
    assert connection_cap(wanted, limit, in_use, 64) == expected
