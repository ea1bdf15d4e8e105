"""`retention retry`: put failed IDs back to pending after the cause is fixed."""

from __future__ import annotations

from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, table

COLUMNS = (
    "response_id",
    "provider",
    "policy",
    "state",
    "due_at",
    "previous_attempts",
    "previous_error",
)
ERROR_SHOWN = 60  # characters of the last error in the table (JSON has it whole)


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID...]")
@click.option(
    "--state",
    type=click.Choice(["failed"]),
    default="failed",
    show_default=True,
    help="The state requeued (only failed IDs are ever put back).",
)
@click.option("--provider", help="Only IDs of this provider.")
@click.option("--policy", help="Only IDs under this policy.")
@click.option("--since", help="Only IDs that failed at or after this time.")
@click.option("--reason", required=True, help="Why: written to every response.requeued event.")
@click.option("--dry-run", is_flag=True, help="List what would be requeued; change nothing.")
@config_option
@OUTPUT
@click.pass_context
def retry(
    ctx: click.Context,
    ids: tuple[str, ...],
    state: str,
    provider: str | None,
    policy: str | None,
    since: str | None,
    reason: str,
    dry_run: bool,
    output: str,
) -> None:
    """Put failed IDs back to pending (all failed IDs when none are named): attempts reset, due
    now or at their deadline if later, each with a response.requeued event naming the reason."""
    from retention.core.ids import validate_id
    from retention.core.times import parse_time
    from retention.errors import UsageError
    from retention.services.requeue import Selection, left_alone, preview, requeue

    for value in ids:
        validate_id(value)
    if not reason.strip():
        raise UsageError("--reason: say why these IDs are retried (it goes in the audit trail)")
    app = app_of(ctx)
    if provider is not None:
        app.settings.provider(provider)  # an unknown provider is a usage error
    selection = Selection(
        ids=ids,
        provider=provider,
        policy=policy,
        since=parse_time(since, field="--since") if since else None,
    )
    skipped = left_alone(app.ledger, selection)
    if dry_run:
        items = preview(app.ledger, app.policies, selection, app.now())
    else:
        app.apply_policies()
        items = requeue(app.ledger, app.policies, selection, reason=reason.strip())
    _show(items, skipped, dry_run=dry_run, reason=reason.strip(), output=output)


def _show(
    items: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    *,
    dry_run: bool,
    reason: str,
    output: str,
) -> None:
    """The requeued (or would-be) records, then a summary; named IDs left alone on stderr."""
    if output == "json":
        emit(
            {
                "dry_run": dry_run,
                "reason": reason,
                "requeued": len(items),
                "records": items,
                "not_failed": skipped,
            },
            output,
        )
        return
    for left in skipped:
        click.echo(
            f"retention: note: {left['response_id']} ({left['provider']}) is {left['state']}, "
            "not selected; left as it is",
            err=True,
        )
    if items:
        rows = [{**i, "previous_error": _short(i["previous_error"])} for i in items]
        click.echo(table(rows, COLUMNS))
    verb = "would requeue" if dry_run else "requeued"
    click.echo(f"{verb} {len(items)} failed ID(s); reason: {reason}")


def _short(text: str | None) -> str | None:
    """A long error cut for the table."""
    if text is None or len(text) <= ERROR_SHOWN:
        return text
    return text[: ERROR_SHOWN - 1] + "…"


COMMANDS: list[click.Command] = [retry]
