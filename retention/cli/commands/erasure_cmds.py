"""`retention erase` and `retention erasure status|ls`: a data subject's erasure requests.

A subject's value is never printed back, nor put in an error message: the ledger keeps its
digest only, and so does every line these commands write.
"""

from __future__ import annotations

from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, table
from retention.core.quoting import quote
from retention.core.vocabulary import ErasureState
from retention.errors import InputError, UsageError

RECORD_COLUMNS = ("response_id", "provider", "state")
WITHHELD_COLUMNS = ("response_id", "provider", "hold")
LIST_COLUMNS = (
    "erasure_id",
    "state",
    "requested_at",
    "due_by",
    "completed_at",
    "overdue",
    "ticket",
)
COUNTS = ("matched", "deleted", "absent", "failed", "pending", "withheld")


@click.command()
@click.option(
    "--subject",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Who: a key of erasure.subject_keys and the person's value (repeatable, once a key).",
)
@click.option("--reason", help="Why (the request's reference): written to erasure.requested.")
@click.option("--ticket", help="The ticket or case the request answers.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted and what is withheld.")
@config_option
@OUTPUT
@click.pass_context
def erase(
    ctx: click.Context,
    pairs: tuple[str, ...],
    reason: str | None,
    ticket: str | None,
    dry_run: bool,
    output: str,
) -> None:
    """A data subject's erasure request: every tracked record of theirs is due now (held ones
    are withheld, with their hold); the next sweep deletes them."""
    from retention.services.erasure import checked_request, request_erasure

    app = app_of(ctx)
    try:
        request = checked_request(_subject(pairs), reason, ticket, app.settings)
    except InputError as exc:  # "subject: ...", "reason: ...": name the option
        raise InputError(f"--{exc.message}") from None
    if not dry_run:
        app.apply_policies()  # holds and deadlines as the policies file says now
    result = request_erasure(
        app.ledger, app.settings, request, dry_run=dry_run, policies=app.policies
    )
    if output == "json":
        emit(result, output)
    elif dry_run:
        _show_preview(result)
    else:
        _show_request(result)


def _subject(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--subject KEY=VALUE` options as a mapping (what is wrong with them is said without
    their value)."""
    if not pairs:
        raise UsageError("--subject: give KEY=VALUE, for example --subject user_id=U")
    subject: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError("--subject: expected KEY=VALUE, for example --subject user_id=U")
        if name in subject:
            raise UsageError(f"--subject: {quote(name)} is given twice; one value a key")
        subject[name] = value
    return subject


def _show_request(result: dict[str, Any]) -> None:
    """What a request did."""
    click.echo(f"erasure {result['erasure_id']}: {result['state']}")
    click.echo(
        f"matched {result['matched']}: due now {result['due']}"
        + (f" ({result['reopened']} failed ones reopened)" if result["reopened"] else "")
        + f", withheld by a hold {result['withheld']}, already gone {result['already_gone']}"
    )
    if result["due"]:
        click.echo(
            "the next sweep deletes them (`retention sweep`, or the daemon's next sweep); "
            f"`retention erasure status {result['erasure_id']}` shows the progress"
        )


def _show_preview(result: dict[str, Any]) -> None:
    """What a request would do."""
    if result["would_delete"]:
        click.echo(table(result["would_delete"], RECORD_COLUMNS))
    if result["withheld"]:
        click.echo("withheld (held records are never deleted):")
        click.echo(table(result["withheld"], WITHHELD_COLUMNS))
    click.echo(
        f"would delete {len(result['would_delete'])}, withhold {len(result['withheld'])}, "
        f"already gone {result['already_gone']} (dry run: nothing was changed)"
    )


@click.group()
def erasure() -> None:
    """Erasure requests by data subject: their progress and their receipts."""


@erasure.command()
@click.argument("erasure_id", metavar="ID")
@config_option
@OUTPUT
@click.pass_context
def status(ctx: click.Context, erasure_id: str, output: str) -> None:
    """One request: its state, deadline, what became of its records, and the withheld ones."""
    from retention.services.erasure import erasure_status

    data = erasure_status(app_of(ctx).ledger, erasure_id)
    if output == "json":
        emit(data, output)
        return
    for key in ("erasure_id", "state", "requested_at", "due_by", "completed_at", "reason"):
        click.echo(f"{key + ':':<14}{data[key] if data[key] is not None else '-'}")
    click.echo(f"{'ticket:':<14}{data['ticket'] or '-'}")
    click.echo(f"{'overdue:':<14}{'yes' if data['overdue'] else 'no'}")
    counts = data["counts"]
    click.echo(f"{'records:':<14}" + ", ".join(f"{k} {counts[k]}" for k in COUNTS))
    if data["withheld"]:
        click.echo("withheld (held records are never deleted):")
        click.echo(table(data["withheld"], WITHHELD_COLUMNS))


@erasure.command("ls")
@click.option(
    "--state",
    type=click.Choice([state.value for state in ErasureState]),
    help="Only requests in this state.",
)
@config_option
@OUTPUT
@click.pass_context
def ls(ctx: click.Context, state: str | None, output: str) -> None:
    """Every erasure request, newest first."""
    from retention.services.erasure import list_erasures

    items = list_erasures(app_of(ctx).ledger, state=state)
    if output == "json":
        emit(items, output)
    elif items:
        click.echo(table(items, LIST_COLUMNS))
    else:
        click.echo("no erasure requests" + (f" {state}" if state else ""))


COMMANDS: list[click.Command] = [erase, erasure]
