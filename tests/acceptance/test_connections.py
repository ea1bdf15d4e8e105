"""The daemon's HTTP surface against a hostile network (issue 13): hundreds of idle and
half-sent connections are closed within the header timeout while /healthz answers within a
second, at the default descriptor limit and at 128; the log says so in a few lines; a body
that stalls is cut at the body timeout; TLS serves https with a key only its owner can read.

Each flood test prints its figures (run with -s): the slowest /healthz during the flood, how
long the slowest flood connection stayed open, and the log lines about the flood.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.flood_helpers import (
    HEADER_TIMEOUT,
    SERVER,
    TOKEN,
    check_flood,
    flood,
    open_fds,
    run_flood,
    wait_closed,
)
from tests.certificates import write_certificate
from tests.helpers import cli, write_config


def test_500_idle_connections_at_the_default_limit(start: Any) -> None:
    """500 idle or half-sent connections: /healthz within 1 s throughout, each connection
    closed within the header timeout (2 s here), a few log lines."""
    daemon = start()
    figures = run_flood(daemon, 500)
    check_flood(figures)
    assert daemon.request("/healthz")[0] == 200


def test_200_idle_connections_at_128_descriptors(start: Any) -> None:
    """At `ulimit -n 128` the cap is lowered to fit (logged once), 200 idle connections never
    reach EMFILE, and /healthz and ingest still answer."""
    daemon = start(nofile=128)
    lowered = daemon.events("http.max_connections_lowered")
    assert len(lowered) == 1 and lowered[0]["fd_limit"] == 128
    figures = run_flood(daemon, 200)
    check_flood(figures)
    body = {"records": [{"id": "resp_after_flood"}]}
    assert daemon.request("/v1/records", body=body, token=TOKEN)[0] == 202


def test_a_stalled_body_is_cut_at_the_body_timeout(start: Any) -> None:
    """A request whose body stops halfway is closed at the body timeout, with no traceback."""
    daemon = start()
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    began = time.monotonic()
    sock.sendall(
        b"POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"records": ['
    )
    [lifetime] = wait_closed([(sock, began)], HEADER_TIMEOUT + 8)
    assert HEADER_TIMEOUT - 0.2 <= lifetime <= HEADER_TIMEOUT + 1.5
    assert daemon.request("/healthz")[0] == 200
    time.sleep(0.3)
    assert not daemon.stderr, "".join(daemon.stderr)
    shed = daemon.events("http.connections_shed")
    assert len(shed) == 1 and shed[0]["body_timeout"] == 1


def test_a_port_out_of_range_stops_commands(workdir: Path, standin_process: str) -> None:
    """`server.listen` with port 99999 is refused when the configuration loads: exit 2, one
    line naming file, line and key, for `doctor` as for `run`."""
    write_config(workdir, standin_process, extra="server:\n  listen: 127.0.0.1:99999\n")
    for command in ("doctor", "run"):
        result = cli(command, cwd=workdir)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().endswith(
            "retention.yaml:9: server.listen: the port must be from 1 to 65535 (0: any free "
            "one), got 99999"
        ), result.stderr
        assert "Traceback" not in result.stderr


TLS = SERVER + "  tls_cert_file: server.crt\n  tls_key_file: server.key\n"


def test_tls_serves_https(start: Any, workdir: Path) -> None:
    """With a certificate and key the daemon serves https (TLS 1.2+) to a verifying client;
    plain http and 100 silent or clear-text clients get nowhere and are closed in the header
    timeout."""
    cert, _ = write_certificate(workdir)
    daemon = start(TLS)
    assert daemon.events("http.listening")[0]["scheme"] == "https"
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{daemon.port}/healthz"
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        assert answer.status == 200 and json.load(answer) == {"status": "ok"}
    with (
        socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(OSError):
        urllib.request.urlopen(daemon.url("/healthz"), timeout=5)
    fds_before = open_fds(daemon)
    silent = flood(daemon.port, 100)  # no TLS handshake, or a head sent in clear
    assert max(wait_closed(silent, HEADER_TIMEOUT + 8)) <= HEADER_TIMEOUT + 1.5
    with urllib.request.urlopen(url, timeout=5, context=context) as answer:
        assert answer.status == 200
    time.sleep(0.3)
    assert open_fds(daemon) <= fds_before + 8
    assert not daemon.stderr, daemon.stderr


def test_tls_key_open_to_others_is_refused(workdir: Path, standin_process: str) -> None:
    """A TLS key readable by group or others stops start-up: exit 2 naming the key."""
    _, key = write_certificate(workdir)
    key.chmod(0o644)
    write_config(workdir, standin_process, extra=TLS)
    result = cli("run", cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "retention.yaml:17: server.tls_key_file:" in result.stderr
    assert "open to group or others" in result.stderr and "Traceback" not in result.stderr


def test_tls_cert_that_is_no_certificate_is_refused(workdir: Path, standin_process: str) -> None:
    """A certificate file that holds no certificate stops start-up naming its key."""
    cert, _ = write_certificate(workdir)
    cert.write_text("not a certificate\n")
    write_config(workdir, standin_process, extra=TLS)
    result = cli("run", cwd=workdir)
    assert result.returncode == 2, result.stderr
    assert "retention.yaml:16: server.tls_cert_file:" in result.stderr
    assert "holds no PEM certificate" in result.stderr


def test_ingest_in_clear_on_the_network_is_warned(start: Any) -> None:
    """Listening beyond loopback without TLS while ingest is on: one warning at start."""
    daemon = start(SERVER.replace("127.0.0.1:0", "0.0.0.0:0"))
    assert len(daemon.events("http.ingest_in_clear")) == 1


def test_systemd_unit_raises_the_descriptor_limit() -> None:
    """The unit gives the daemon room for its connection cap and its own files."""
    unit = Path(__file__).parents[2] / "deploy" / "systemd" / "retention.service"
    assert "LimitNOFILE=65536" in unit.read_text().splitlines()
