"""`retention discover`: enrol what the provider lists that the ledger lacks."""

from __future__ import annotations

import asyncio

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit, table


@click.command()
@click.option("--provider", help="Only this provider (default: every configured one).")
@config_option
@OUTPUT
@click.pass_context
def discover(ctx: click.Context, provider: str | None, output: str) -> None:
    """Enrol every stored response (and stored chat completion) the provider lists that the
    ledger lacks."""
    from retention.core.vocabulary import ObjectKind
    from retention.discover import LISTED_KINDS
    from retention.discover import discover as crawl

    app = app_of(ctx)
    names = [app.settings.provider(provider).name] if provider else list(app.settings.providers)
    app.apply_policies()

    async def run_all() -> list[dict[str, object]]:
        reports = [
            await crawl(app.ledger, app.settings, app.policies, name, clock=app.now, kind=kind)
            for name in names
            for kind in LISTED_KINDS
        ]  # a provider without a listing of chat completions keeps none: not shown
        shown = [r for r in reports if r.object == ObjectKind.RESPONSE or not r.unsupported]
        return [r.as_dict() for r in shown]

    reports = asyncio.run(run_all())
    if output == "json":
        emit(reports, output)
    else:
        columns = ("provider", "object", "pages", "listed", "enrolled", "invalid", "complete")
        click.echo(table(reports, columns))
        for item in reports:
            if item["error"]:
                click.echo(f"provider {item['provider']}: {item['error']}", err=True)
    ctx.exit(1 if any(r["error"] for r in reports) else 0)


COMMANDS = [discover]
