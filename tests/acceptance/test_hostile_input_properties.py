"""Hostile input on every path (issue 13, items 6 and 7), sent as a user or a peer would:
arbitrary Unicode with lone surrogates and NUL, bytes that are not UTF-8, NaN, Infinity and
1e400, creation times in the future. On the command line (`record`, `import` of JSONL and
CSV, `policies check`, a config file), over HTTP (ingest on a running daemon), and in a
provider's listing (discovery): never a 5xx, never a traceback, never exit 1; a rejection
leaves the ledger as it was; what is accepted is text the ledger stores and prints. Record,
import, ingest and discovery run on SQLite and on PostgreSQL.

Subprocesses are slow, so the command-line properties draw few examples, each carrying many
hostile values; the in-process ones draw many. Examples are derandomized: CI sees the same.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from retention.config.policyfile import load_policies, parse_policies
from retention.config.settings import load_settings
from retention.discover import CrawlState, discover
from retention.errors import ConfigError
from retention.ledger import queries
from retention.ledger.db import make_engine, upgrade
from retention.services.open_ledger import open_ledger
from tests.acceptance.daemon_helpers import DaemonProcess
from tests.helpers import POLICIES, ago, cli, user_env, write_config

# a day a century after the test runs: always in the future, never a fixed date
FAR_AHEAD = ago(days=-36_525)[:10]

TOKEN = "ingest-token-for-property-tests"
NOWHERE = "http://127.0.0.1:9/v1"  # no provider is asked anything on these paths
QUIET = "sweep:\n  interval: 1h\ndiscover:\n  interval: 0\nserver:\n  listen: 127.0.0.1:0\n"


def _settings(examples: int) -> settings:
    """Derandomized settings for `examples` examples, with no time limit per example."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- what a hostile or careless sender can write ----------------------------------------

SPECIAL = (
    *("\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x85", "\x9f", "\t", "\n", "\r"),
    *("\ud800", "\udbff", "\udc80", "\udcff", "\udfff"),  # lone surrogates
    *("\u2028", "\u202e", "\ufeff", "\uffff", "é", "😀", '"', "\\", "=", ","),
)
chars = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from("abcxyz0129_-.:/"),
)
hostile = st.text(chars, max_size=10)
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")  # the documented form of a response ID
names = st.from_regex(r"[a-z][a-z0-9_]{2,10}", fullmatch=True)


@dataclass(frozen=True)
class Raw:
    """A number written as it stands in the JSON text (what `json.dumps` cannot write)."""

    token: str


NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1E+999")
raw_numbers = st.sampled_from([*NON_FINITE, "1" * 30, "9223372036854775808", "1e308", "-0"]).map(
    Raw
)


def _created() -> st.SearchStrategy[Any]:
    """Creation times: true ones, a little ahead (clock skew), far ahead, and nonsense."""
    moments = {
        "past": lambda: ago(days=40),
        "skew": lambda: ago(minutes=-2),
        "ahead": lambda: ago(minutes=-30),
        "far": lambda: FAR_AHEAD,
        "unix": lambda: int(datetime.now(UTC).timestamp()) - 3600,
        "unix_ahead": lambda: int(datetime.now(UTC).timestamp()) + 86400,
    }
    return st.one_of(
        st.sampled_from(sorted(moments)).map(lambda k: moments[k]()),
        hostile,
        raw_numbers,
        st.floats(),
        st.none(),
    )


meta_values = st.one_of(
    names, hostile, st.integers(), st.floats(), st.booleans(), raw_numbers, st.none()
)
metadata = st.one_of(
    st.dictionaries(st.one_of(names, hostile), meta_values, max_size=3), hostile, raw_numbers
)
ids = st.one_of(names, names, hostile)
SLOTS = ("id", "provider", "created_at", "model", "key", "value", "previous", "unknown", "meta")
ascii_mostly = st.sampled_from([True, True, True, False])  # escapes, or raw bytes on the wire


@st.composite
def hostile_records(draw: st.DrawFn, listed: bool = False) -> dict[str, Any]:
    """A record a well-behaved app would send, with one or two fields made hostile (so that
    most examples reach the ledger unless the door holds); `listed`: as a provider lists it."""
    record: dict[str, Any] = {"id": draw(names)}
    now = int(datetime.now(UTC).timestamp())
    if draw(st.booleans()):
        past = draw(st.integers(60, 86400 * 60))
        record["created_at"] = now - past if listed else ago(seconds=past)
    if draw(st.booleans()):
        record["model"] = draw(names)
    if draw(st.booleans()):
        record["metadata"] = {draw(names): draw(names)}
    if listed:
        record["store"] = draw(st.sampled_from([True, True, False]))
    for slot in draw(st.lists(st.sampled_from(SLOTS), max_size=2, unique=True)):
        meta = record.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        if slot == "key":
            record["metadata"] = {**meta, draw(hostile): draw(names)}
        elif slot == "value":
            record["metadata"] = {**meta, draw(names): draw(meta_values)}
        elif slot == "meta":
            record["metadata"] = draw(metadata)
        elif slot == "created_at":
            record["created_at"] = draw(_created())
        elif slot == "unknown":
            record[draw(hostile)] = draw(meta_values)
        elif slot == "previous":
            record["previous_response_id"] = draw(ids)
        else:
            record[slot] = draw(st.one_of(hostile, raw_numbers))
    return record


def to_json(value: Any, ascii_only: bool = True) -> str:
    """JSON text of `value`, Raw numbers as they stand, NaN and Infinity as Python writes them."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, dict):
        items = (f"{to_json(k, ascii_only)}:{to_json(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def raw_bytes(text: str) -> bytes:
    """`text` as bytes on the wire: U+DC80..U+DCFF are the raw bytes they stand for (what
    Python reads from bytes that are not UTF-8), other surrogates their 3-byte forms."""
    out = bytearray()
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append(ord(ch) - 0xDC00)
        else:
            out += ch.encode("utf-8", "surrogatepass")
    return bytes(out)


def is_utf8(data: bytes) -> bool:
    """Whether `data` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unstorable(value: Any) -> bool:
    """Whether `value` holds anything no ledger may keep: a lone surrogate or NUL in any
    string, or a number that is not finite (an independent oracle: every place in a record
    is validated, so such a record must be refused)."""
    if isinstance(value, Raw):
        return value.token in NON_FINITE
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(unstorable(k) or unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    return False


# ---- the ledger, read directly ------------------------------------------------------------


@dataclass
class Backend:
    """Where a test's ledger lives, and the environment its commands run with."""

    url: str  # for SQLAlchemy, read by the test itself
    env: dict[str, str]

    def engine(self) -> Engine:
        """An engine to read the ledger."""
        return create_engine(self.url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, workdir: Path) -> Backend:
    """SQLite in the work folder, or a fresh, upgraded PostgreSQL database."""
    if request.param == "sqlite":
        return Backend(f"sqlite:///{workdir / 'retention.db'}", {})
    url = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    return Backend(url, {"RETENTION_DATABASE_URL": plain})


def snapshot(engine: Engine) -> tuple[Any, ...]:
    """Every record and every record or policy event: what a rejection must leave alone."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM records ORDER BY id")).all()
        events = conn.execute(
            text(
                "SELECT count(*) FROM audit_events "
                "WHERE event LIKE 'response.%' OR event LIKE 'policy.%'"
            )
        ).scalar_one()
    return tuple(tuple(str(v) for v in r) for r in rows), events


def tracked(engine: Engine) -> set[str]:
    """The response IDs the ledger tracks."""
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT response_id FROM records")).scalars())


def assert_stored_cleanly(engine: Engine) -> None:
    """Every text the ledger holds encodes as UTF-8 without NUL, names hold no control
    character, and no creation time is in the future."""
    limit = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=5)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT response_id, provider, model, meta, created_at FROM records")
        ).all()
    for response_id, provider, model, meta, created_at in rows:
        meta = json.loads(meta) if isinstance(meta, str) else meta
        for name in (response_id, provider, model, *meta):
            if name is not None:
                name.encode("utf-8")
                assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name), name
        for value in meta.values():
            value.encode("utf-8")
            assert "\x00" not in value
        if created_at is not None:
            created = datetime.fromisoformat(str(created_at)).replace(tzinfo=None)
            assert created <= limit, (response_id, created_at)


def assert_clean_exit(result: subprocess.CompletedProcess[bytes]) -> None:
    """Exit 0 or 2, no traceback, and a refusal that ends with its one-line error."""
    assert result.returncode in (0, 2), result.stderr[-2000:]
    assert b"Traceback" not in result.stderr, result.stderr[-2000:]
    if result.returncode == 2:
        last = result.stderr.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        assert last.startswith(b"retention: error: "), result.stderr[-2000:]


def run(
    args: list[bytes | str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[bytes]:
    """`python -m retention ARGS` with arguments given as bytes, as a shell passes them."""
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=user_env(env),
        capture_output=True,
        timeout=120,
    )


def primed(workdir: Path, backend: Backend) -> Engine:
    """A config, and a ledger that has applied the policies (so that a refused command has
    nothing of its own to write)."""
    write_config(workdir, NOWHERE)
    result = cli("record", "primer_1", cwd=workdir, env=backend.env)
    assert result.returncode == 0, result.stderr
    return backend.engine()


# ---- the command line ---------------------------------------------------------------------


def _argv(value: str) -> bytes:
    """A value as a command-line argument can carry it: bytes, never NUL."""
    return raw_bytes(value).replace(b"\x00", b"")


ARG_SLOTS = ("id", "model", "provider", "key", "value", "created_at")


@st.composite
def record_arguments(draw: st.DrawFn) -> list[str]:
    """`record` arguments as a user would give them, with one or two made hostile."""
    values: dict[str, Any] = {
        "id": draw(names),
        "model": draw(st.none() | names),
        "provider": draw(st.sampled_from([None, "fireworks"])),
        "key": draw(names),
        "value": draw(st.none() | names),
        "created_at": draw(st.none() | st.integers(60, 86400 * 60).map(lambda s: ago(seconds=s))),
    }
    for slot in draw(st.lists(st.sampled_from(ARG_SLOTS), min_size=1, max_size=2, unique=True)):
        values[slot] = draw(_created() if slot == "created_at" else hostile)
    args = []
    for option in ("model", "provider", "created_at"):
        if values[option] is not None and not isinstance(values[option], float | Raw):
            args += [f"--{option.replace('_', '-')}", str(values[option])]
    if values["value"] is not None:
        args += ["--meta", f"{values['key']}={values['value']}"]
    return [*args, "--", values["id"]]


def test_record_arguments(workdir: Path, backend: Backend) -> None:
    """`record` with hostile bytes in the ID, --model, --provider, --meta or --created-at."""
    engine = primed(workdir, backend)

    @_settings(14)
    @given(arguments=record_arguments())
    @example(arguments=["--model", "gpt\udcff", "--", "r_model"])
    @example(arguments=["--meta", "k=\ud800", "--", "r_meta"])
    @example(arguments=["--created-at", FAR_AHEAD, "--", "r_future"])
    def check(arguments: list[str]) -> None:
        args = [b"record", *(_argv(a) for a in arguments)]
        before = snapshot(engine)
        result = run(args, workdir, backend.env)  # type: ignore[arg-type]
        assert_clean_exit(result)
        if not all(is_utf8(a) for a in args) or FAR_AHEAD in arguments:
            assert result.returncode == 2, "bytes that are not UTF-8, or the future, refused"
        if result.returncode == 2:
            assert snapshot(engine) == before
        assert_stored_cleanly(engine)

    check()
    engine.dispose()


def _csv_file(rows: list[dict[str, Any]], meta_key: str) -> tuple[str, bool]:
    """CSV text of `rows` (a `metadata` JSON column and one `metadata.KEY` column), and
    whether a row must be refused."""
    header = ["id", "provider", "created_at", "model", "metadata", f"metadata.{meta_key}"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    refuse = False
    for row in rows:
        cells = []
        for column in header[:5]:
            value = row.get(column)
            if value is None:
                cells.append("")
            elif isinstance(value, dict):
                cells.append(to_json(value))
                refuse |= bool(value) and unstorable(value)
            else:
                cell = value.token if isinstance(value, Raw) else str(value)
                cells.append(cell)
                refuse |= cell != "" and unstorable(cell)
        extra = row.get("previous_response_id") or ""
        cells.append(extra if isinstance(extra, str) else "")
        refuse |= cells[-1] != "" and (unstorable(cells[-1]) or unstorable(meta_key))
        writer.writerow(cells)
    return out.getvalue(), refuse


def test_import_files(workdir: Path, backend: Backend) -> None:
    """`import` of JSONL and CSV files full of hostile rows, escaped or as raw bytes."""
    engine = primed(workdir, backend)

    @_settings(16)
    @given(
        rows=st.lists(hostile_records(), min_size=1, max_size=8),
        fmt=st.sampled_from(["jsonl", "csv"]),
        ascii_only=ascii_mostly,
        skip_invalid=st.booleans(),
        meta_key=st.one_of(names, hostile),
    )
    def check(
        rows: list[dict[str, Any]], fmt: str, ascii_only: bool, skip_invalid: bool, meta_key: str
    ) -> None:
        if fmt == "jsonl":
            data = b"".join(raw_bytes(to_json(r, ascii_only)) + b"\n" for r in rows)
            refuse = any(unstorable(r) for r in rows)
        else:
            content, refuse = _csv_file(rows, meta_key)
            data = raw_bytes(content)
        (workdir / f"in.{fmt}").write_bytes(data)
        args: list[bytes | str] = ["import", f"in.{fmt}", "-o", "json"]
        before = snapshot(engine)
        result = run([*args, "--skip-invalid"] if skip_invalid else args, workdir, backend.env)
        assert_clean_exit(result)
        if not is_utf8(data) or (refuse and not skip_invalid):
            assert result.returncode == 2, result.stderr[-2000:]
        if result.returncode == 2:
            assert snapshot(engine) == before
        elif refuse:
            assert json.loads(result.stdout)["rejected"] >= 1
        assert_stored_cleanly(engine)

    check()
    assert run(["ls", "-o", "json"], workdir, backend.env).returncode == 0
    engine.dispose()


# ---- ingest on a running daemon ---------------------------------------------------------


def post(daemon: DaemonProcess, body: bytes) -> tuple[int, bytes]:
    """POST raw bytes to /v1/records with the token: (status, body)."""
    request = urllib.request.Request(
        daemon.url("/v1/records"),
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


SAID = {  # what the 400 says for each of the explicit examples below
    "i_model": "model: '\\ud800' is not valid Unicode",
    "i_meta": "metadata.k: '\\ud800' is not valid Unicode",
    "i_nul": "model: 'gpt\\x00' holds a control character",
    "i_nan": "the body is not JSON: NaN is not a JSON number",
    "i_big": "the body is not JSON: the number '1e400' is too large",
    "i_future": f"created_at: {FAR_AHEAD}T00:00:00.000000Z is in the future",
}


def test_ingest_bodies(workdir: Path, backend: Backend) -> None:
    """POST /v1/records with hostile items: 202 or 400 naming them, never a 5xx; a 400 leaves
    the ledger as it was; afterwards `ls -o json` prints everything."""
    engine = primed(workdir, backend)
    write_config(workdir, NOWHERE, extra=QUIET)
    daemon = DaemonProcess(workdir, {**backend.env, "RETENTION_INGEST_TOKEN": TOKEN})
    try:

        @_settings(150)
        @given(items=st.lists(hostile_records(), min_size=1, max_size=5), ascii_only=ascii_mostly)
        @example(items=[{"id": "i_model", "model": "\ud800"}], ascii_only=True)
        @example(items=[{"id": "i_meta", "metadata": {"k": "\ud800"}}], ascii_only=True)
        @example(items=[{"id": "i_nul", "model": "gpt\x00"}], ascii_only=True)
        @example(items=[{"id": "i_nan", "metadata": {"k": Raw("NaN")}}], ascii_only=True)
        @example(items=[{"id": "i_big", "metadata": {"k": Raw("1e400")}}], ascii_only=True)
        @example(items=[{"id": "i_future", "created_at": FAR_AHEAD}], ascii_only=True)
        def check(items: list[dict[str, Any]], ascii_only: bool) -> None:
            body = raw_bytes(to_json({"records": items}, ascii_only))
            before = snapshot(engine)
            status, answer = post(daemon, body)
            assert status in (202, 400), (status, answer[:500])
            if not is_utf8(body) or any(unstorable(i) for i in items):
                assert status == 400, answer[:500]
            if any(i.get("created_at") == FAR_AHEAD for i in items):
                assert status == 400
            if len(items) == 1 and items[0]["id"] in SAID:
                said = json.loads(answer)
                errors = [said["error"], *(item["error"] for item in said.get("items", []))]
                assert any(SAID[items[0]["id"]] in e for e in errors), said
            if status == 400:
                error = json.loads(answer)
                assert error["error"]
                assert all(0 <= item["index"] < len(items) for item in error.get("items", []))
                assert snapshot(engine) == before
            assert_stored_cleanly(engine)

        check()
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in json.dumps(daemon.lines) + "".join(daemon.stderr)
    assert not [line for line in daemon.lines if str(line.get("status", "")).startswith("5")]
    listed = run(["ls", "-o", "json"], workdir, backend.env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    json.loads(listed.stdout)
    engine.dispose()


# ---- a provider's listing -----------------------------------------------------------------


class Listing:
    """A provider that answers GET /v1/responses with whatever page the test sets."""

    def __init__(self) -> None:
        self.page = b'{"object": "list", "data": [], "has_more": false}'
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        started = threading.Event()
        self.port = 0

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/v1/responses", self._list)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
            started.set()

        def run_loop() -> None:
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run_loop, daemon=True)
        self.thread.start()
        started.wait(10)

    async def _list(self, request: web.Request) -> web.Response:
        """The page, as bytes, whatever it holds."""
        return web.Response(body=self.page, content_type="application/json")

    @property
    def base_url(self) -> str:
        """The API root."""
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """Stop serving."""
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def listing() -> Iterator[Listing]:
    """A crafted listing on loopback."""
    server = Listing()
    yield server
    server.stop()


def test_discovery_listing(
    workdir: Path, backend: Backend, listing: Listing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery reads hostile listing pages: it never raises, tracks every stored response
    (its text escaped to what the ledger can store), and never lets a creation time in the
    future move its high-water mark."""
    monkeypatch.setenv("FW_TEST_KEY", "test-key")
    for name, value in backend.env.items():
        monkeypatch.setenv(name, value)
    config = write_config(workdir, listing.base_url)
    app_settings = load_settings(config)
    policies = load_policies(app_settings.policies_file)
    ledger = open_ledger(app_settings, policies=policies)
    engine = backend.engine()
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731

    @_settings(60)
    @given(items=st.lists(hostile_records(listed=True), max_size=6), ascii_only=ascii_mostly)
    def check(items: list[dict[str, Any]], ascii_only: bool) -> None:
        with ledger.transaction() as conn:  # every example crawls from the top
            queries.set_meta(conn, CrawlState.key("fireworks"), json.dumps(asdict(CrawlState())))
        listing.page = raw_bytes(
            to_json({"object": "list", "data": items, "has_more": False}, ascii_only)
        )
        before = tracked(engine)
        report = asyncio.run(discover(ledger, app_settings, policies, "fireworks", clock=clock))
        stored = {  # each response the provider stores is tracked, whatever else it holds
            i["id"]
            for i in items
            if isinstance(i.get("id"), str)
            and ID.fullmatch(i["id"])
            and i.get("store") is not False
        }
        if report.error is None:  # a page that is not JSON at all holds no ID to track
            assert tracked(engine) - before == stored - before
        else:
            assert tracked(engine) == before
        assert report.enrolled == len(tracked(engine) - before)
        assert_stored_cleanly(engine)
        with ledger.read() as conn:
            state = json.loads(queries.get_meta(conn, CrawlState.key("fireworks")) or "{}")
        if state.get("high_water") is not None:
            assert state["high_water"] <= clock().timestamp() + 300

    try:
        check()
    finally:
        ledger.close()
        engine.dispose()


# ---- policies and configuration files -----------------------------------------------------


def yaml_quoted(value: str) -> str:
    """`value` as a YAML double-quoted scalar, every character outside printable ASCII
    escaped (how YAML writes a surrogate or a NUL into a string)."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


scalars = st.one_of(
    hostile.map(yaml_quoted),
    hostile.map(lambda v: v.replace("\n", " ")),  # raw, in the file as it stands
    st.sampled_from([".nan", ".inf", "-.inf", "1.0e+400", "1e400", "~", "[]", "{}"]),
)
POLICY_SLOTS = ("ttl", "name", "model", "key", "value", "hold", "hold_id")
POLICY_TEMPLATE = """\
version: 1
default:
  ttl: {ttl}
policies:
  - name: {name}
    match: {{model: {model}, metadata: {{{key}: {value}}}}}
    ttl: 24h
holds:
  - name: {hold}
    ids: [{hold_id}]
"""
POLICY_GOOD = {
    "ttl": "30d",
    "name": "pii",
    "model": "m*",
    "key": "k",
    "value": "v",
    "hold": "h",
    "hold_id": "resp_held",
}
CONFIG_SLOTS = ("account", "key_env", "concurrency", "timeout", "rate", "interval", "policies")
CONFIG_TEMPLATE = """\
providers:
  fireworks:
    kind: fireworks
    base_url: {base_url}
    api_key_env: {key_env}
    account_id: {account}
    max_concurrency: {concurrency}
    timeout_s: {timeout}
    rate_limit_per_s: {rate}
policies_file: {policies}
sweep:
  interval: {interval}
"""
CONFIG_GOOD = {
    "account": "acme",
    "key_env": "FW_TEST_KEY",
    "concurrency": "8",
    "timeout": "10",
    "rate": "50",
    "interval": "60s",
    "policies": "policies.yaml",
}


def _filled(template: str, good: dict[str, str], changes: dict[str, str]) -> bytes:
    """The template with some slots hostile, as the bytes of a file."""
    return raw_bytes(template.format(**{**good, **changes, "base_url": NOWHERE}))


def _assert_clean_config_error(exc: ConfigError, name: str) -> None:
    """One printable line that starts with the file's name."""
    assert exc.message.startswith(name), exc.message
    assert "\n" not in exc.message, exc.message
    exc.message.encode("utf-8")


def test_policies_and_config_in_process(tmp_path: Path) -> None:
    """Many hostile policies and config files: each loads, or is one clean ConfigError."""
    (tmp_path / "policies.yaml").write_text(POLICIES)

    @_settings(300)
    @given(
        policy=st.dictionaries(st.sampled_from(POLICY_SLOTS), scalars, min_size=1, max_size=2),
        config=st.dictionaries(st.sampled_from(CONFIG_SLOTS), scalars, min_size=1, max_size=2),
    )
    def check(policy: dict[str, str], config: dict[str, str]) -> None:
        data = _filled(POLICY_TEMPLATE, POLICY_GOOD, policy)
        try:
            parsed = parse_policies(data.decode("utf-8", "surrogateescape"), "p.yaml")
        except ConfigError as exc:
            _assert_clean_config_error(exc, "p.yaml")
        else:
            json.dumps([p.name for p in parsed.policies], ensure_ascii=False).encode("utf-8")
        path = tmp_path / "retention.yaml"
        path.write_bytes(_filled(CONFIG_TEMPLATE, CONFIG_GOOD, config))
        try:
            load_settings(path)
        except ConfigError as exc:
            _assert_clean_config_error(exc, str(path))

    check()


def test_policies_and_config_on_the_command_line(workdir: Path) -> None:
    """`policies check` and `status` with hostile files: exit 0 or 2 in one line."""
    write_config(workdir, NOWHERE)

    @_settings(10)
    @given(
        policy=st.dictionaries(st.sampled_from(POLICY_SLOTS), scalars, min_size=1, max_size=2),
        config=st.dictionaries(st.sampled_from(CONFIG_SLOTS), scalars, min_size=1, max_size=2),
    )
    @example(policy={"name": '"p\\ud800"'}, config={"account": '"a\\0"'})
    @example(policy={"value": "v\x01"}, config={"rate": ".nan"})
    def check(policy: dict[str, str], config: dict[str, str]) -> None:
        (workdir / "hostile.yaml").write_bytes(_filled(POLICY_TEMPLATE, POLICY_GOOD, policy))
        result = run(["policies", "check", "hostile.yaml"], workdir, {})
        assert_clean_exit(result)
        (workdir / "hostile-config.yaml").write_bytes(_filled(CONFIG_TEMPLATE, CONFIG_GOOD, config))
        result = run(["-c", "hostile-config.yaml", "status"], workdir, {})
        assert_clean_exit(result)

    check()
