"""A hostile or broken provider, over real sockets, against the CLI as a user runs it: a listing
that loops or answers a cursor that is no ID, bodies of many megabytes (and a gzip bomb), and a
key echoed where no exact search finds it (the head of it in a header cut short, percent-encoded
in a redirect, split by a zero-width space in listed metadata)."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from retention.redaction import forms_of
from tests.helpers import LONG_AGO, cli, user_env, write_config

# long (as OpenAI's project keys are), with a quote, a backslash and an apostrophe
KEY = "sk-proj-\"Hostile\\Key'" + secrets.token_hex(75)
ENV = {"FW_TEST_KEY": KEY}
MiB = 1024 * 1024

Script = Callable[[BaseHTTPRequestHandler, str, dict[str, list[str]]], None]


class Provider:
    """A provider on loopback that answers every request as `script(handler, path, query)`
    says; it keeps each request's method and path."""

    def __init__(self) -> None:
        self.script: Script = lambda handler, path, query: send(handler, 404, b"{}")
        self.requests: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                """Any GET."""
                self._answer()

            def do_DELETE(self) -> None:
                """Any DELETE."""
                self._answer()

            def _answer(self) -> None:
                """What the script says; a client hanging up mid-body is fine."""
                provider.requests.append(f"{self.command} {self.path}")
                target = urlsplit(self.path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    provider.script(self, target.path, parse_qs(target.query))
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes | Iterator[bytes],
    headers: dict[str, str] | None = None,
    length: int | None = None,
) -> None:
    """One answer: `body` whole, or in chunks with `length` announced."""
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(name, value)
    size = len(body) if isinstance(body, bytes) else length
    handler.send_header("Content-Length", str(size))
    handler.send_header("Connection", "close")
    handler.end_headers()
    for chunk in [body] if isinstance(body, bytes) else body:
        handler.wfile.write(chunk)


def page(items: list[dict[str, Any]], *, has_more: bool, last_id: str | None = None) -> bytes:
    """A listing page."""
    return json.dumps({"data": items, "has_more": has_more, "last_id": last_id}).encode()


@pytest.fixture
def provider(workdir: Path) -> Iterator[Provider]:
    """The provider, and a config in `workdir` pointing at it."""
    server = Provider()
    # a server of this test's own, scripted as Fireworks' API: not one the stand-in plays
    write_config(workdir, server.url, extra="sweep:\n  max_attempts: 1\n", kind="fireworks")
    yield server
    server.close()


def _discover(workdir: Path) -> subprocess.CompletedProcess[str]:
    """`retention discover`, with the hostile key (a crawl that never ends fails the test)."""
    return subprocess.run(
        [sys.executable, "-m", "retention", "discover"],
        cwd=workdir,
        env=user_env(ENV),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_listing_that_loops_ends_the_crawl(workdir: Path, provider: Provider) -> None:
    """A cursor that cycles (A, B, A, ...) and a cursor whose page is empty with more to come
    (so the crawl restarts from the top, again and again) end the run with exit 1 and
    `the listing loops` after a few requests; before, each crawled for ever."""
    cycle = {"": "cA", "cA": "cB", "cB": "cA"}

    def looping(handler: BaseHTTPRequestHandler, path: str, query: dict[str, list[str]]) -> None:
        after = query.get("after", [""])[0]
        send(handler, 200, page([{"id": cycle[after]}], has_more=True, last_id=cycle[after]))

    def empty_after_cursor(handler: BaseHTTPRequestHandler, path: str, query: Any) -> None:
        items = [] if "after" in query else [{"id": "e1"}]
        send(handler, 200, page(items, has_more=True, last_id=None if "after" in query else "e1"))

    for script, most in ((looping, 4), (empty_after_cursor, 3)):
        provider.requests.clear()
        provider.script = script
        result = _discover(workdir)
        assert result.returncode == 1 and "the listing loops" in result.stderr, result.stderr
        for listing in ("/responses", "/chat/completions"):  # each crawl ends on its own
            asked = [r for r in provider.requests if f"{listing}?" in r]
            assert 0 < len(asked) <= most, provider.requests
        assert "Traceback" not in result.stderr


def test_a_cursor_that_is_no_id_is_refused_and_never_saved(
    workdir: Path, provider: Provider
) -> None:
    """A cursor holding the echoed key (redacted, so no longer an ID) or an opaque `abc/def==`
    fails the crawl before it is saved; when the listing is sane again the next crawl
    completes. Before, the saved cursor was refused by every crawl after."""
    answered = {"cursor": ""}

    def bad_cursor(handler: BaseHTTPRequestHandler, path: str, query: Any) -> None:
        send(handler, 200, page([{"id": "r1"}], has_more=True, last_id=answered["cursor"]))

    provider.script = bad_cursor
    for cursor in (KEY, "abc/def=="):
        answered["cursor"] = cursor
        result = _discover(workdir)
        assert result.returncode == 1 and "a cursor that is not a response ID" in result.stderr
    provider.script = lambda h, p, q: send(h, 200, page([{"id": "r2"}], has_more=False))
    result = _discover(workdir)
    assert result.returncode == 0 and "True" in result.stdout, result.stderr
    assert KEY[:20] not in (workdir / "retention.db").read_bytes().decode("latin-1")


def _peak_mb(workdir: Path, *args: str) -> tuple[int, int, str]:
    """Run the CLI under a small parent that reports its peak memory: exit code, MB, and what
    the command printed."""
    measure = (
        "import resource, subprocess, sys; "
        "code = subprocess.run([sys.executable, '-m', 'retention', *sys.argv[1:]]).returncode; "
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, *args],
        cwd=workdir,
        env=user_env(ENV),
        capture_output=True,
        text=True,
        timeout=120,
    )
    code, peak = result.stdout.split()[-2:]
    return int(code), int(peak), result.stdout + result.stderr


def _megabytes(size: int, fill: bytes = b"y") -> Iterator[bytes]:
    """`size` bytes, a MiB at a time."""
    chunk = fill * MiB
    for _ in range(size // MiB):
        yield chunk


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_gigantic_bodies_do_not_fill_the_memory(
    workdir: Path, provider: Provider, transport: str
) -> None:
    """A 96 MiB listing page, a gzip bomb (256 MiB of JSON in 250 KB) and 32 MiB error bodies
    to eight DELETEs at once, through either transport: discovery fails naming the size, the
    sweep records the 500s, and no command's memory passes 200 MB (measured: at most 136 MB;
    before: 265 to 292 MB, 833 to 849 MB and 345 to 374 MB)."""
    config = workdir / "retention.yaml"
    extra = f"\n    transport: {transport}\n"
    config.write_text(config.read_text().replace("\n    account_id:", extra + "    account_id:"))
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    gz = bomb.compress(b'{"data": [], "pad": "') + b"".join(
        bomb.compress(chunk) for chunk in _megabytes(256 * MiB, b"x")
    )
    gz += bomb.compress(b'"}') + bomb.flush()
    listings: dict[str, Script] = {
        "plain": lambda h, p, q: send(h, 200, _megabytes(96 * MiB), length=96 * MiB),
        "gzip": lambda h, p, q: send(h, 200, gz, {"Content-Encoding": "gzip"}),
    }
    for name, script in listings.items():
        provider.script = script
        code, peak, err = _peak_mb(workdir, "discover")
        assert code == 1 and "larger than 16 MiB" in err and peak < 200, (name, peak, err)

    ids = [f"b{i}" for i in range(8)]
    assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    provider.script = lambda h, p, q: (
        send(h, 500, _megabytes(32 * MiB), length=32 * MiB)
        if h.command == "DELETE"
        else send(h, 200, page([], has_more=False))
    )
    code, peak, printed = _peak_mb(workdir, "sweep")
    assert code == 1 and "failed 8" in printed and peak < 200, (peak, printed[-2000:])
    rows = json.loads(cli("ls", "-o", "json", cwd=workdir, env=ENV).stdout)
    assert all(r["state"] == "failed" and "HTTP 500: yyy" in r["last_error"] for r in rows)


def test_an_echoed_key_no_exact_search_finds_is_in_no_file(
    workdir: Path, provider: Provider
) -> None:
    """The key's head in an oversized `x-request-id` (aiohttp quotes its first 100 bytes),
    percent-encoded in a redirect's Location and in a 400 body, and split by a zero-width space
    or a tab in listed metadata: after sweeps and discovery, neither the key, any escaped form
    of it, nor its first 24 characters are in any file of the state folder or any output."""
    leaked_head = KEY[:24]

    def echoing(handler: BaseHTTPRequestHandler, path: str, query: Any) -> None:
        auth = handler.headers.get("Authorization", "")
        if handler.command == "GET" and path.endswith("/responses"):
            meta = {"zw": KEY[:9] + "\u200b" + KEY[9:], "tab": KEY[:9] + "\t" + KEY[9:]}
            send(handler, 200, page([{"id": "listed1", "metadata": meta}], has_more=False))
        elif path.endswith("/big"):
            send(handler, 500, b"{}", {"x-request-id": auth + "z" * 9000})
        elif path.endswith("/moved"):
            send(handler, 307, b"", {"Location": f"https://evil.test/?k={quote(auth, safe='')}"})
        else:
            send(handler, 400, json.dumps({"error": quote(auth, safe="")}).encode())

    provider.script = echoing
    out = workdir / "outputs"
    out.mkdir()
    ids = ["big", "moved", "other"]
    assert cli("record", *ids, "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    for number, args in enumerate([("sweep",), ("discover",), ("ls", "-o", "json")]):
        result = cli(*args, cwd=workdir, env=ENV)
        assert "Traceback" not in result.stderr, result.stderr
        (out / f"{number}.out").write_text(result.stdout + result.stderr)
    trail = (workdir / "audit.jsonl").read_text()
    assert "Got more than 8190 bytes" in trail  # aiohttp's excerpt of the header is there
    forms = {*forms_of(KEY), quote(KEY, safe=""), leaked_head}
    blobs = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    leaks = [(p.name, f) for p, blob in blobs.items() for f in forms if f.encode() in blob]
    assert leaks == []
