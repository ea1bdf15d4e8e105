"""`retention sweep`: one pass over what is due now, or the plan of it with --dry-run."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, progress, table
from retention.core.durations import format_age
from retention.core.plan import PlannedDeletion
from retention.core.times import format_time

if TYPE_CHECKING:
    from retention.sweep.summary import SweepSummary


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted and why; send nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most N DELETE requests.")
@config_option
@OUTPUT
@click.pass_context
def sweep(ctx: click.Context, dry_run: bool, limit: int | None, output: str) -> None:
    """Delete everything due now at its provider, then exit."""
    from retention.errors import AuditError
    from retention.evidence.checkpoints import checkpoint_if_due
    from retention.ledger import queries
    from retention.notify.notifier import Notifier
    from retention.sweep.hooks import Hooks
    from retention.sweep.planning import planned_now
    from retention.sweep.runner import sweep_once

    app = app_of(ctx)
    if dry_run:
        _print_plan(planned_now(app.ledger, app.policies, app.now(), limit), app.now(), output)
        return
    notifier = Notifier(app.settings.notify)  # a notify token that cannot be read: exit 2
    ctx.call_on_close(notifier.close)  # sends what the sweep made within 5 s, or spools it
    notifier.start(app.ledger)
    app.apply_policies()
    with app.ledger.read() as conn:
        due = queries.count_due(conn, app.now())
    with progress(min(due, limit or due), "deleting") as advance:
        report = asyncio.run(
            sweep_once(
                app.ledger,
                app.settings,
                app.policies,
                clock=app.now,
                limit=limit,
                hooks=Hooks(progress=advance),
            )
        )
    _print_report(report, output)
    try:
        checkpoint_if_due(app.ledger, app.settings.audit, app.now(), publish=app.publish_checkpoint)
    except AuditError as exc:  # the deletions stand; the evidence needs a human
        click.echo(f"retention: error: {exc.message}", err=True)
        ctx.exit(1)
    ctx.exit(report.exit_code)


def _print_plan(planned: list[PlannedDeletion], now: datetime, output: str) -> None:
    """The dry run's plan."""
    items = [
        {
            "response_id": p.facts.response_id,
            "provider": p.facts.provider,
            "account": p.facts.account,
            "policy": p.decision.policy,
            "deadline": format_time(p.decision.deadline),
            "deadline_basis": p.decision.basis,
            "overdue": format_age(now - p.decision.deadline),
        }
        for p in planned
    ]
    if output == "json":
        emit({"dry_run": True, "would_delete": items}, output)
        return
    if items:
        click.echo(table(items, ("response_id", "provider", "policy", "deadline", "overdue")))
    click.echo(f"dry run: {len(items)} would be deleted; nothing was sent")


def _print_report(report: SweepSummary, output: str) -> None:
    """The sweep's summary."""
    data = report.as_dict()
    if output == "json":
        emit(data, output)
        return
    click.echo(
        f"deleted {data['deleted']}, absent {data['absent']}, failed {data['failed']}, "
        f"retry later {data['deferred']}"
        + (f", cannot delete {data['unsupported']}" if data["unsupported"] else "")
    )
    if data["unsupported"]:
        click.echo(
            f"{data['unsupported']} ID(s) of a kind the provider cannot delete stay pending, "
            "charged nothing (provider.cannot_delete; `retention doctor` names it)",
            err=True,
        )
    for name, fault in sorted(report.faults.items()):
        click.echo(
            f"provider {name}: {fault['event']}: {fault['reason']}; "
            "no ID was charged an attempt, they stay pending",
            err=True,
        )
    for name in report.auth_failed:
        if name not in report.faults:
            click.echo(
                f"provider {name}: credentials refused (401/403); nothing was deleted for it",
                err=True,
            )
    if report.brake:
        click.echo("safety brake: the sweep stopped at its DELETE limit; more is due", err=True)


COMMANDS = [sweep]
