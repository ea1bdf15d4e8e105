"""Commands that put IDs into the ledger and show what it holds: record, import, ls, status,
explain. Ledger modules are imported inside commands so that `--help` stays instant."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, TYPE_CHECKING, Any

import click

from retention.cli.app import app_of
from retention.cli.commands import TIME_HELP, config_option, parse_optional_time
from retention.cli.output import OUTPUT, emit, progress
from retention.core.ids import is_valid_id, validate_id
from retention.core.record_input import (
    NewRecord,
    Reject,
    checked_name,
    csv_rows,
    jsonl_rows,
    parse_meta_args,
    valid_records,
)
from retention.core.text import printable
from retention.core.times import format_time, parse_time, refuse_future
from retention.core.vocabulary import OBJECT_KINDS, STATES, ObjectKind
from retention.errors import InputError, InvalidIdError

if TYPE_CHECKING:
    from retention.services.recording import EnrolResult

MAX_SHOWN_REJECTS = 20


OBJECTS = click.Choice([kind.value for kind in OBJECT_KINDS])  # what a record's ID may name
# how `status` names each kind of record besides responses
_PLURALS = {"conversation": "conversations", "chat.completion": "chat completions"}


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--provider", help="Provider name from retention.yaml (default: the first).")
@click.option("--created-at", help="When the responses were created (RFC 3339 or unix s).")
@click.option("--model", help="The model that produced them.")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata (repeatable).")
@click.option(
    "--object",
    "kind",
    type=OBJECTS,
    default=ObjectKind.RESPONSE.value,
    show_default=True,
    help="What the IDs name: responses, conversations (deleted with their items), or stored "
    "chat completions.",
)
@config_option
@OUTPUT
@click.pass_context
def record(
    ctx: click.Context,
    ids: tuple[str, ...],
    provider: str | None,
    created_at: str | None,
    model: str | None,
    meta: tuple[str, ...],
    kind: str,
    output: str,
) -> None:
    """Track response (or conversation, or chat completion) IDs; recording an ID again
    changes nothing, except that an earlier --created-at tightens its deadline."""
    bad = [i for i in ids if not is_valid_id(i)]
    if bad:
        for item in bad[:-1]:
            click.echo(f"retention: error: {_id_error(item)}", err=True)
        raise InvalidIdError(_id_error(bad[-1]) + ("; nothing was recorded" if ids else ""))
    app = app_of(ctx)
    if provider is not None:
        checked_name(provider, "--provider")
    app.settings.provider(provider)  # an unknown provider is a usage error
    model = checked_name(model, "--model") if model else None
    when = parse_time(created_at, field="--created-at") if created_at else None
    if when is not None:
        refuse_future(when, app.now(), field="--created-at")
    metadata = parse_meta_args(meta)
    records = [
        NewRecord(
            response_id=i,
            provider=provider,
            created_at=when,
            model=model,
            metadata=metadata,
            object=kind,
        )
        for i in ids
    ]
    _report(_enrol(ctx, records), output)


def _id_error(value: str) -> str:
    """The message for one invalid ID."""
    try:
        validate_id(value)
    except InvalidIdError as exc:
        return exc.message
    return ""


@click.command("import")
@click.argument("source", metavar="FILE|-")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    help="Input format (default: from the file name; jsonl for stdin).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Write the valid rows; rejects go to stderr with line numbers.",
)
@config_option
@OUTPUT
@click.pass_context
def import_(
    ctx: click.Context, source: str, fmt: str | None, skip_invalid: bool, output: str
) -> None:
    """Bulk-track IDs from JSONL or CSV: all or nothing unless --skip-invalid."""
    fmt = fmt or ("csv" if source.lower().endswith(".csv") else "jsonl")
    name = "<stdin>" if source == "-" else source
    app = app_of(ctx)
    rejects = _Rejects()

    def verdict() -> InputError | None:
        """Show the rejects; refuse the whole import for any, unless told to skip them."""
        for reject in rejects.shown:
            click.echo(f"{name}:{reject.line}: {reject.error}", err=True)
        if rejects.count > len(rejects.shown):
            click.echo(f"{name}: ... and {rejects.count - len(rejects.shown)} more", err=True)
        if rejects.count and not skip_invalid:
            return InputError(
                f"{name}:{rejects.shown[0].line}: {rejects.count} invalid row(s); nothing "
                "was imported (fix them, or pass --skip-invalid)"
            )
        return None

    with (
        _lines(source, name) as (lines, size),
        progress(size, "importing", unit="bytes") as advance,
    ):
        counted = _counted(lines, advance)
        rows = csv_rows(counted) if fmt == "csv" else jsonl_rows(counted)
        records = valid_records(
            rows,
            rejects.add,
            providers=set(app.settings.providers),
            after_reject=skip_invalid,
            now=app.now(),
        )
        result = _enrol(ctx, records, verdict)
    _report(result, output, rejected=rejects.count)  # after the progress bar is gone


class _Rejects:
    """How many rows were rejected, and the first few (all that is shown): memory stays flat
    however bad the file."""

    def __init__(self) -> None:
        self.shown: list[Reject] = []
        self.count = 0

    def add(self, reject: Reject) -> None:
        """Count one more."""
        self.count += 1
        if len(self.shown) < MAX_SHOWN_REJECTS:
            self.shown.append(reject)


@contextmanager
def _lines(source: str, name: str) -> Iterator[tuple[Iterator[str], int]]:
    """The lines of a file or stdin as UTF-8, read as they are used, and the input's size.

    Input that is not a regular file (stdin, a pipe) is first copied to a private temporary
    file: the import holds the ledger's write lock while it reads, and a slow writer upstream
    must not hold it too."""
    with ExitStack() as stack:
        try:
            raw = sys.stdin.buffer if source == "-" else stack.enter_context(open(source, "rb"))
            if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                spool = stack.enter_context(tempfile.TemporaryFile())  # 0600, gone when closed
                shutil.copyfileobj(raw, spool, 1 << 20)
                spool.seek(0)
                raw = spool
            size = os.fstat(raw.fileno()).st_size
        except FileNotFoundError:
            raise InputError(f"{name}: file not found") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
        yield _decoded(raw, name), size


def _decoded(raw: IO[bytes], name: str) -> Iterator[str]:
    """Lines of `raw` as UTF-8; a line that is not names its number."""
    number = 0
    try:
        for number, line in enumerate(raw, start=1):  # noqa: B007
            yield line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}:{number}: not valid UTF-8") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


def _counted(lines: Iterator[str], advance: Callable[[int], None]) -> Iterator[str]:
    """Pass lines through, moving the progress bar every MiB or so."""
    pending = 0
    for line in lines:
        pending += len(line)
        if pending >= 1 << 20:
            advance(pending)
            pending = 0
        yield line
    advance(pending)


def _enrol(
    ctx: click.Context,
    records: Iterable[NewRecord],
    verdict: Callable[[], InputError | None] | None = None,
) -> EnrolResult:
    """Apply current policies, then enrol."""
    from retention.services.recording import enrol

    app = app_of(ctx)
    app.apply_policies()
    return enrol(app.ledger, app.settings, app.policies, records, verdict=verdict)


def _report(result: EnrolResult, output: str, rejected: int = 0) -> None:
    """Print what an enrolment did."""
    data = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": rejected}
    if output == "json":
        emit(data, output)
    else:
        click.echo(
            f"recorded {result.accepted}, already tracked {result.duplicates}"
            + (f" ({result.tightened} deadline(s) tightened)" if result.tightened else "")
            + (f", rejected {rejected}" if rejected else "")
        )


@click.command("ls")
@click.option(
    "--state",
    type=click.Choice([state.value for state in STATES]),
    help="Only records in this state.",
)
@click.option("--due", is_flag=True, help="Only records due for deletion now.")
@click.option("--provider", metavar="NAME", help="Only records of this provider.")
@click.option("--policy", metavar="NAME", help="Only records under this policy.")
@click.option("--object", "kind", type=OBJECTS, help="Only records of this kind of object.")
@click.option("--since", metavar="T", help=f"Only responses made at or after T ({TIME_HELP}).")
@click.option("--until", metavar="T", help=f"Only responses made before T ({TIME_HELP}).")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
@config_option
@OUTPUT
@click.pass_context
def ls(
    ctx: click.Context,
    state: str | None,
    due: bool,
    provider: str | None,
    policy: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    output: str,
) -> None:
    """List the ledger's records; the filters combine (all must hold).

    A response is "made" at its created_at, or when the ledger first saw it where that is
    unknown (what its TTL counts from)."""
    from retention.ledger import queries

    app = app_of(ctx)
    with app.ledger.read() as conn:
        if provider not in (None, *app.settings.providers, *queries.counts_by_provider(conn)):
            # a typo must not read as "nothing there"; a provider removed from the config
            # since still lists its records
            app.settings.provider(provider)  # refuses it, naming the configured ones
        rows = queries.list_rows(
            conn,
            state=state,
            provider=provider,
            policy=policy,
            since=parse_optional_time(since, "--since"),
            until=parse_optional_time(until, "--until"),
            due_at=app.now() if due else None,
            limit=limit,
            kind=kind,
        )
    items = [_row_dict(r) for r in rows]
    emit(
        items,
        output,
        rows=items,
        columns=(
            "response_id",
            "object",
            "provider",
            "state",
            "policy",
            "deadline",
            "hold",
            "attempts",
        ),
    )


def _row_dict(row: Any) -> dict[str, Any]:
    """A record as users see it."""
    return {
        "response_id": row.response_id,
        "object": row.object,
        "provider": row.provider,
        "account": row.account,
        "state": row.state,
        "policy": row.policy,
        "deadline": format_time(row.deadline),
        "deadline_basis": row.deadline_basis,
        "hold": row.hold,
        "attempts": row.attempts,
        "created_at": format_time(row.created_at),
        # printable: rows stored before unencodable text was refused at the door
        "model": printable(row.model) if row.model else row.model,
        "metadata": {printable(k): printable(v) for k, v in (row.meta or {}).items()},
        "last_status": row.last_status,
        "last_error": row.last_error,
        "closed_at": format_time(row.closed_at),
    }


@click.command()
@config_option
@OUTPUT
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """Counts by state, next deadline, overdue count and the last sweep."""
    from retention.views.status import status_of

    app = app_of(ctx)
    data = status_of(app.ledger, app.now())
    if output == "json":
        emit(data, output)
        return
    click.echo(f"ledger: {data['ledger']}")
    for state in STATES:
        click.echo(f"{state:<10} {data['states'][state]}")
    for kind, by_state in data["objects"].items():  # conversations, chat completions
        shown = ", ".join(f"{state} {n}" for state, n in by_state.items() if n)
        click.echo(f"of which {_PLURALS.get(kind, kind)}: {sum(by_state.values())} ({shown})")
    click.echo(f"{'due now':<10} {data['due_now']}")
    click.echo(f"{'overdue':<10} {data['overdue']}")
    click.echo(f"next deadline: {data['next_deadline'] or '-'}")
    for name, cov in data["coverage"].items():
        seen = cov["listed_seen"]
        click.echo(
            f"coverage {name}: {cov['tracked']} tracked"
            + (
                f"; discovery read {seen} listed, enrolled {cov['enrolled_by_discovery']} the apps "
                f"had not recorded, last complete crawl {cov['last_complete_crawl'] or 'never'}"
                if seen is not None
                else "; discovery has not run"
            )
        )
    last = data["last_sweep"]
    click.echo(
        "last sweep: "
        + (
            f"{last['finished_at']} (deleted {last['deleted']}, absent "
            f"{last['absent']}, failed {last['failed']})"
            if last
            else "never"
        )
    )


@click.command()
@click.argument("response_id", metavar="ID")
@config_option
@OUTPUT
@click.pass_context
def explain(ctx: click.Context, response_id: str, output: str) -> None:
    """Why an ID has its policy and deadline, its state, and its audit events."""
    from retention.views.explain import explain_id

    validate_id(response_id)
    app = app_of(ctx)
    data = explain_id(app.ledger, app.policies, response_id)
    if output == "json":
        emit(data, output)
        return
    for item in data["records"]:
        for key in (
            "response_id",
            "provider",
            "state",
            "policy",
            "matched",
            "deadline",
            "deadline_basis",
            "hold",
            "attempts",
            "last_error",
        ):
            click.echo(f"{key + ':':<16}{item.get(key) if item.get(key) is not None else '-'}")
        if item.get("hold_detail"):
            click.echo(f"{'held by:':<16}{_held_by(item['hold_detail'])}")
        if len(item["conversation"]) > 1:
            click.echo("conversation (previous_response_id chain, oldest first):")
            for turn in item["conversation"]:
                click.echo(
                    f"  {turn['response_id']:<32} {turn['state']:<8} "
                    f"created {turn['created_at'] or '-'}  deadline {turn['deadline']}"
                )
        click.echo("events:")
        for event in item["events"]:
            click.echo(
                f"  {event['chain']}#{event['seq']:<6} {event['ts']}  {event['event']:<32}"
                f" {event['hash'][:16]}"
            )


def _held_by(detail: dict[str, Any]) -> str:
    """Who holds a record and why, on one line: a ledger hold's reason, ticket, placer and
    expiry, or the policies file that lists it."""
    if detail.get("source") != "ledger":
        return f"the policies file {detail.get('file') or ''}".rstrip()
    parts = [f"reason {detail['reason']!r}"]
    if detail.get("ticket"):
        parts.append(f"ticket {detail['ticket']}")
    actor = detail.get("actor")
    if actor:
        parts.append(f"placed by {actor} at {detail['placed_at']}")
    if detail.get("until"):
        parts.append(f"until {detail['until']}")
    return ", ".join(parts)


COMMANDS = [record, import_, ls, status, explain]
