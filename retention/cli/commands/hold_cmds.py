"""`retention hold add|rm|ls`: legal holds placed and lifted in the ledger, each with its reason.

A hold placed here acts exactly as one listed in the policies file: its records are `held` and
never deleted until it is lifted (by `hold rm`, or by itself at its `--until`). A running
daemon adopts it at its next sweep. A data subject's value in `--match` is kept, shown and
written only as its digest.
"""

from __future__ import annotations

from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, table
from retention.core.quoting import quote
from retention.errors import InputError, UsageError

LIST_COLUMNS = ("name", "source", "state", "held", "until", "ticket", "reason")
MATCH_HELP = (
    "Hold every response this selects (repeatable, all must hold): provider=P, account=A, "
    "model=GLOB, metadata.KEY=VALUE."
)
UNTIL_HELP = (
    "When the hold lifts itself: a time (RFC 3339, a date, unix seconds) or a duration from "
    "now (90s, 7d, P30D). Without it the hold lasts until `hold rm`."
)


@click.group()
def hold() -> None:
    """Legal holds: records they cover are never deleted until the hold is lifted."""


@hold.command("add")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--match", "pairs", multiple=True, metavar="KEY=VALUE", help=MATCH_HELP)
@click.option("--reason", help="Why (the matter, the order, who asked): in the audit trail.")
@click.option("--ticket", help="The ticket or case the hold answers.")
@click.option("--until", metavar="TIME|DURATION", help=UNTIL_HELP)
@click.option("--name", help="The hold's name (default: hold-YYYYMMDD-xxxx); used once.")
@config_option
@OUTPUT
@click.pass_context
def add(
    ctx: click.Context,
    ids: tuple[str, ...],
    pairs: tuple[str, ...],
    reason: str | None,
    ticket: str | None,
    until: str | None,
    name: str | None,
    output: str,
) -> None:
    """Place a legal hold on the IDs given and on every response --match selects (either or
    both). Open records it covers are held at once; IDs the ledger does not track yet are held
    when they are recorded."""
    from retention.services.holds import actor_here, checked_hold, place_hold

    app = app_of(ctx)
    try:
        request = checked_hold(
            app.settings,
            ids=list(ids),
            match=_match(pairs) if pairs else None,
            reason=reason,
            ticket=ticket,
            until=until,
            name=name,
            now=app.now(),
        )
    except InputError as exc:  # "reason: ...": name the option
        raise InputError(_option(exc.message)) from None
    app.apply_policies()  # holds and deadlines as the policies file says now
    placed = place_hold(app.ledger, app.policies, request, actor=actor_here())
    if output == "json":
        emit(placed, output)
        return
    click.echo(f"hold {placed['name']} placed" + _until(placed))
    click.echo(
        f"held now {placed['held']}"
        + (
            f" ({placed['in_flight']} claimed by a sweep under way: a DELETE already sent "
            "may still complete)"
            if placed["in_flight"]
            else ""
        )
        + f", already held by another hold {placed['already_held']}"
        + (
            f", listed IDs not recorded yet {placed['not_recorded']} (held when recorded)"
            if placed["ids"]
            else ""
        )
        + (
            f", listed IDs whose deletion failed {placed['failed']} (still at the provider: "
            "held if retried)"
            if placed["failed"]
            else ""
        )
        + (f", listed IDs already deleted or absent {placed['closed']}" if placed["closed"] else "")
    )


def _match(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`--match KEY=VALUE` options as a policies file's match."""
    match: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise UsageError("--match: expected KEY=VALUE, for example --match metadata.matter=M-1")
        if key.startswith("metadata."):
            field = key.removeprefix("metadata.")
            if not field:
                raise UsageError("--match: metadata.KEY needs a key, for example metadata.matter")
            where, name = match.setdefault("metadata", {}), field
        elif key in ("provider", "account", "model"):
            where, name = match, key
        else:
            raise UsageError(
                f"--match: {quote(key)} is not provider, account, model or metadata.KEY"
            )
        if name in where:
            raise UsageError(f"--match: {quote(key)} is given twice; one value a key")
        where[name] = value
    return match


def _option(message: str) -> str:
    """A field's message as the option that gave it (`ids` are the arguments)."""
    if message.startswith("ids: "):
        return "ID or --match: " + message.removeprefix("ids: ")
    if message.startswith("ids["):
        index, _, rest = message.removeprefix("ids[").partition("]: ")
        return f"ID {int(index) + 1}: {rest}"
    return f"--{message}"


def _until(hold: dict[str, Any]) -> str:
    """`, until T` when the hold ends by itself."""
    return f", until {hold['until']}" if hold["until"] else ""


@hold.command("rm")
@click.argument("name", metavar="NAME")
@click.option("--reason", help="Why the hold ends: in the audit trail.")
@config_option
@OUTPUT
@click.pass_context
def rm(ctx: click.Context, name: str, reason: str | None, output: str) -> None:
    """Lift a hold placed with `hold add`: each record no other hold keeps is released and
    due at its own deadline (at once when that has passed); nothing is deleted by this
    command. A hold of the policies file ends when it is removed from the file."""
    from retention.services.holds import actor_here, lift_hold

    if reason is None or not reason.strip():
        raise InputError("--reason: say why the hold ends")
    app = app_of(ctx)
    app.apply_policies()
    lifted = lift_hold(app.ledger, app.policies, name, reason=reason, actor=actor_here())
    if output == "json":
        emit(lifted, output)
        return
    click.echo(f"hold {lifted['name']} lifted")
    click.echo(
        f"released {lifted['released']} (due now {lifted['due_now']}), still held by another "
        f"hold {lifted['still_held']}"
    )
    if lifted["due_now"]:
        click.echo("the next sweep deletes those due (`retention sweep`, or the daemon's next)")


@hold.command("ls")
@click.option("--all", "every", is_flag=True, help="Lifted holds too.")
@config_option
@OUTPUT
@click.pass_context
def ls(ctx: click.Context, every: bool, output: str) -> None:
    """The holds in force, from the policies file and placed in the ledger, with how many
    records each keeps held."""
    from retention.services.holds import list_holds

    app = app_of(ctx)
    items = list_holds(app.ledger, app.policies, lifted=every)
    if output == "json":
        emit(items, output)
    elif items:
        click.echo(table(items, LIST_COLUMNS))
    else:
        click.echo("no holds" + ("" if every else " in force"))


COMMANDS: list[click.Command] = [hold]
