"""`retention doctor`: every pre-flight check, each OK or FAIL with a one-line hint.

A configuration that does not load is a usage error (exit 2) before any check runs; otherwise
the exit code is 0 only when every check passed. The provider probes are the sweep's own
(`retention.sweep.probing`), so what doctor approves is what a sweep will find.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, table
from retention.errors import RetentionError

if TYPE_CHECKING:
    from retention.config.settings import ProviderSettings, Settings, WitnessSettings
    from retention.ledger.ledger import Ledger
    from retention.provider.probe import ProbeResult

OK, FAIL, SKIP = "OK", "FAIL", "SKIP"
# account IDs that ship in examples and deploy files: never a real account
PLACEHOLDERS = frozenset(
    {"my-account", "your-account", "account-id", "your-account-id", "changeme", "example", "xxx"}
)
CLOCK_SLACK = timedelta(seconds=5)  # replicas' clocks may differ this much
EARLIEST = datetime(2024, 1, 1, tzinfo=UTC)  # a clock before this was never set


@dataclass(frozen=True, slots=True)
class Check:
    """One pre-flight check's outcome."""

    check: str
    result: str  # OK | FAIL | SKIP (not run: what it needs failed)
    detail: str


@click.command()
@click.option("--provider", "-p", "only", metavar="NAME", help="Check only this provider.")
@config_option
@OUTPUT
@click.pass_context
def doctor(ctx: click.Context, only: str | None, output: str) -> None:
    """Pre-flight: configuration, keys, ledger, provider probes, audit trail, signing key."""
    app = app_of(ctx)
    settings = app.settings  # a file that does not load is a usage error: exit 2
    names = [settings.provider(only).name] if only else list(settings.providers)
    checks = _all_checks(settings, names, app.now())
    passed = all(c.result != FAIL for c in checks)
    if output == "json":
        emit({"ok": passed, "checks": [asdict(c) for c in checks]}, output)
    else:
        click.echo(table([asdict(c) for c in checks], ("check", "result", "detail")))
        failed = sum(1 for c in checks if c.result == FAIL)
        click.echo("all checks passed" if passed else f"{failed} check(s) failed")
    ctx.exit(0 if passed else 1)


def _all_checks(settings: Settings, names: list[str], now: datetime) -> list[Check]:
    """Every check, in the order an operator fixes things (the ledger's before the event loop
    of the provider probes starts: ledger calls block)."""
    checks = [Check("config", OK, f"{settings.path} loaded"), _policies(settings)]
    ledger_check, ledger = _ledger(settings)
    checks += [ledger_check, _clock(ledger, now), _audit_file(settings.audit.file)]
    checks += [_signing_key(settings.audit.signing_key_file), _erasure(settings, ledger)]
    checks += [_tls(settings)]
    checks += [_witness(w) for w in settings.audit.witness]
    try:
        return checks + asyncio.run(_providers(settings, names, ledger, now))
    finally:
        if ledger is not None:
            ledger.close()


async def _providers(
    settings: Settings, names: list[str], ledger: Ledger | None, now: datetime
) -> list[Check]:
    """Each provider's key, account and probe checks."""
    checks: list[Check] = []
    for name in names:
        checks += await _provider(settings.providers[name], ledger, now)
    return checks


def _tls(settings: Settings) -> Check:
    """The HTTP surface's certificate and key load (only `run` reads them otherwise)."""
    from retention.daemon.tls import server_context

    try:
        context = server_context(settings)
    except RetentionError as exc:
        return Check("tls", FAIL, exc.message)
    if context is None:
        return Check("tls", OK, "none configured: the daemon serves plain http")
    return Check("tls", OK, f"{settings.server.tls_cert_file}: certificate and key load")


def _policies(settings: Settings) -> Check:
    """The policies file loads."""
    from retention.config.policyfile import load_policies

    try:
        policies = load_policies(settings.policies_file)
    except RetentionError as exc:
        return Check("policies", FAIL, exc.message)
    count = len(policies.policies) + 1
    return Check("policies", OK, f"{settings.policies_file}: {count} policies, default included")


def _ledger(settings: Settings) -> tuple[Check, Ledger | None]:
    """The ledger answers and its schema is current (a SQLite file not made yet is fine)."""
    from retention.errors import SchemaOutdatedError
    from retention.ledger.audit_file import AuditSink
    from retention.ledger.db import make_engine, require_current, sqlite_path
    from retention.ledger.ledger import Ledger

    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        if _writable_folder(path.parent):
            return Check("ledger", OK, f"{path} is made at first use"), None
        return Check("ledger", FAIL, f"cannot create {path}: its folder is not writable"), None
    try:
        engine = make_engine(settings.database_url)
        require_current(engine)
    except SchemaOutdatedError as exc:
        if path is None:
            return Check("ledger", FAIL, exc.message), None
        detail = f"{path}: older schema, upgraded automatically at next use"
        return Check("ledger", OK, detail), None
    except RetentionError as exc:
        return Check("ledger", FAIL, _with_cause(exc)), None
    where = path or engine.url.render_as_string(hide_password=True)
    ledger = Ledger(engine, AuditSink(None, log_events=False), chain=settings.audit.chain)
    return Check("ledger", OK, f"{where}: reachable, schema current"), ledger


def _with_cause(exc: RetentionError) -> str:
    """The error's message with the driver's own first line (what the database said)."""
    orig = getattr(exc.__cause__, "orig", None) or exc.__cause__
    said = str(orig).strip().splitlines()[0] if orig is not None and str(orig).strip() else ""
    return f"{exc.message}: {said}" if said and said not in exc.message else exc.message


def _clock(ledger: Ledger | None, now: datetime) -> Check:
    """This host's clock is not behind the newest audit event (a trail goes forward)."""
    from sqlalchemy import func, select

    from retention.ledger.models import AuditEvent

    if now < EARLIEST:
        return Check("clock", FAIL, f"the clock says {now:%Y-%m-%d}: set the system time (NTP)")
    if ledger is None:
        return Check("clock", SKIP, "no ledger to compare with")
    try:
        with ledger.read() as conn:
            newest = conn.execute(select(func.max(AuditEvent.ts))).scalar()
    except RetentionError as exc:
        return Check("clock", FAIL, exc.message)
    if newest is not None and now + CLOCK_SLACK < newest:
        behind = int((newest - now).total_seconds())
        hint = "fix the system time (NTP) before writing more events"
        return Check("clock", FAIL, f"{behind}s behind the newest audit event; {hint}")
    return Check("clock", OK, f"{now:%Y-%m-%dT%H:%M:%SZ}, not before the newest audit event")


def _audit_file(path: Path | None) -> Check:
    """The audit file can be appended to."""
    if path is None:
        return Check("audit file", OK, "none configured: the ledger holds the trail")
    if path.exists():
        if os.access(path, os.W_OK):
            return Check("audit file", OK, f"{path}: writable")
        return Check("audit file", FAIL, f"{path}: not writable by this user (check its owner)")
    if _writable_folder(path.parent):
        return Check("audit file", OK, f"{path}: made at first event")
    return Check("audit file", FAIL, f"cannot create {path}: its folder is missing or read-only")


def _signing_key(path: Path | None) -> Check:
    """The checkpoint key is private and loads (or will be made at first start)."""
    from retention.evidence.signing_key import Signer

    if path is None:
        return Check("signing key", OK, "none configured: no signed checkpoints")
    if not path.exists():
        if _writable_folder(path.parent):
            return Check("signing key", OK, f"{path}: made 0600 by `retention run` at first start")
        return Check("signing key", FAIL, f"cannot create {path}: its folder is not writable")
    try:
        signer = Signer.from_file(path, create=False)
    except RetentionError as exc:
        return Check("signing key", FAIL, exc.message)
    mode = path.stat().st_mode & 0o777
    return Check("signing key", OK, f"{path}: private ({mode:04o}), {signer.fingerprint}")


def _erasure(settings: Settings, ledger: Ledger | None) -> Check:
    """The erasure key is private and loads (or will be made at first use), and the records
    an older ledger tracked before subjects were are all indexed by subject."""
    from retention.services import subject_index
    from retention.services.subject_key import subject_key

    path = settings.erasure.key_file
    if path is None:
        return Check("erasure", FAIL, "erasure.key_file: no erasure key file is configured")
    if path.exists():
        try:
            subject_key(path)
        except RetentionError as exc:
            return Check("erasure", FAIL, exc.message)
        key = f"{path}: private ({path.stat().st_mode & 0o777:04o})"
    elif _writable_folder(path.parent):
        key = f"{path}: made 0600 at first use"
    else:
        return Check("erasure", FAIL, f"cannot create {path}: its folder is not writable")
    if ledger is None:
        return Check("erasure", OK, key)
    try:
        with ledger.read() as conn:
            left = subject_index.backfill_left(conn)
    except RetentionError as exc:
        return Check("erasure", FAIL, exc.message)
    if left:
        return Check(
            "erasure",
            FAIL,
            f"{left} records not yet indexed by subject; `retention run` or `retention erase` "
            "finishes it",
        )
    return Check("erasure", OK, f"{key}; every record indexed by subject")


def _witness(witness: WitnessSettings) -> Check:
    """A witness folder can be written; a URL witness has its token."""
    name = f"witness {witness.name}"
    if witness.dir is not None:
        if _writable_folder(witness.dir):
            return Check(name, OK, "writable")
        return Check(name, FAIL, f"{witness.dir} is not writable by this user (or its parent)")
    if witness.token_env and not os.environ.get(witness.token_env, "").strip():
        return Check(name, FAIL, f"environment variable {witness.token_env} is not set")
    return Check(name, OK, "configured (not contacted: checkpoints reach it when published)")


def _writable_folder(folder: Path) -> bool:
    """Whether files can be made in `folder`, or in the nearest existing parent that would
    hold it when it is made."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


async def _provider(
    settings: ProviderSettings, ledger: Ledger | None, now: datetime
) -> list[Check]:
    """Key, account and probe of one provider."""
    name = settings.name
    try:
        key = settings.api_key()
    except RetentionError as exc:
        key_check = Check(f"key {name}", FAIL, exc.message)
        return [key_check, _account(settings), Check(f"probe {name}", SKIP, "no usable key")]
    where = f"${settings.api_key_env}" if settings.api_key_env else str(settings.api_key_file)
    checks = [Check(f"key {name}", OK, f"read from {where}, header-safe"), _account(settings)]
    return [
        *checks,
        await _probe(settings, key, ledger, now),
        *await _chat_completions(settings, key, ledger, now),
    ]


def _account(settings: ProviderSettings) -> Check:
    """Fireworks needs a real account ID."""
    name, account = f"account {settings.name}", settings.account_id
    if settings.kind != "fireworks":
        return Check(name, OK, f"not used by kind {settings.kind}")
    if not account:
        hint = "set providers.{}.account_id to your Fireworks account ID"
        return Check(name, FAIL, hint.format(settings.name))
    if account.lower() in PLACEHOLDERS:
        return Check(name, FAIL, f"{account!r} is the example's placeholder: set your account ID")
    return Check(name, OK, account)


async def _probe(
    settings: ProviderSettings, key: str, ledger: Ledger | None, now: datetime
) -> Check:
    """The sweep's own probe of one provider."""
    from retention.provider.client import ProviderClient
    from retention.sweep.probing import probe_all, recent_ids

    ids: list[str] = []
    if ledger is not None:
        try:
            ids = await asyncio.to_thread(recent_ids, ledger, settings, now)
        except RetentionError:
            ids = []
    client = ProviderClient(settings, key)
    try:
        result = (await probe_all({settings.name: client}, {settings.name: ids}))[settings.name]
    finally:
        await client.aclose()
    return _checked(f"probe {settings.name}", result)


def _checked(name: str, result: ProbeResult) -> Check:
    """A probe's verdict as a check line."""
    if result.ok:
        return Check(name, OK, result.reason)
    return Check(name, FAIL, f"{result.event}: {result.reason}")


async def _chat_completions(
    settings: ProviderSettings, key: str, ledger: Ledger | None, now: datetime
) -> list[Check]:
    """Whether the provider can delete the stored chat completions the ledger holds for it
    pending (none: no line): what the last sweep found (a DELETE answered 405), else the
    sweep's own check of their API and recent IDs."""
    from retention.core.vocabulary import ObjectKind
    from retention.ledger import queries
    from retention.provider.client import ProviderClient
    from retention.provider.probe import probe_kind
    from retention.sweep.probing import recent_ids
    from retention.sweep.results import cannot_delete_key

    kind = ObjectKind.CHAT_COMPLETION
    if ledger is None:
        return []

    def look() -> tuple[list[str], str | None]:
        """The recent IDs, and what the last sweep found (off the event loop)."""
        with ledger.read() as conn:
            known = queries.get_meta(conn, cannot_delete_key(settings.name, kind))
        return recent_ids(ledger, settings, now, kind), known

    try:
        ids, known = await asyncio.to_thread(look)
    except RetentionError:
        return []
    name = f"chat completions {settings.name}"
    if known is not None:
        found = json.loads(known)
        reason = f"{found['reason']} (since {found['since']}); they stay pending"
        return [Check(name, FAIL, f"provider.cannot_delete: {reason}")]
    if not ids:
        return []
    client = ProviderClient(settings, key)
    try:
        result = await probe_kind(client, kind, ids)
    finally:
        await client.aclose()
    return [_checked(name, result)]


COMMANDS: list[click.Command] = [doctor]
