"""`retention report`: the compliance summary as a table, Markdown or JSON."""

from __future__ import annotations

import click

from retention.cli.app import app_of
from retention.cli.commands import TIME_HELP, config_option, parse_optional_time
from retention.cli.output import emit


@click.command()
@click.option(
    "--since", help=f"Deletions closed, and erasures requested, from this time ({TIME_HELP})."
)
@click.option("--until", help="Deletions before this time.")
@click.option(
    "--tolerance",
    default=None,
    help="Lag past the deadline still counted on time (default: sweep.interval).",
)
@click.option(
    "--output",
    "-o",
    "output",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@config_option
@click.pass_context
def report(
    ctx: click.Context, since: str | None, until: str | None, tolerance: str | None, output: str
) -> None:
    """Compliance summary: on time, late and late on arrival (lag p50/p99/max), absent,
    failed, held; erasure requests (completed, open, overdue, time to completion)."""
    from retention.cli.report_view import render_report
    from retention.core.durations import parse_duration
    from retention.errors import UsageError
    from retention.views.report import compliance_report

    app = app_of(ctx)
    try:
        allowed = parse_duration(tolerance) if tolerance else app.settings.sweep.interval
    except ValueError as exc:
        raise UsageError(f"--tolerance: {exc}") from None
    data = compliance_report(
        app.ledger,
        since=parse_optional_time(since, "--since"),
        until=parse_optional_time(until, "--until"),
        tolerance_s=allowed.total_seconds(),
        now=app.now(),
    )
    if output == "json":
        emit(data, output)
    else:
        click.echo(render_report(data, markdown=output == "markdown"))


COMMANDS: list[click.Command] = [report]
