"""`retention run` (the daemon) and `retention demo` (the whole cycle on a local stand-in)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from retention import logs
from retention.cli.app import app_of
from retention.cli.commands import config_option


@click.command()
@config_option
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: scheduled sweeps, HTTP surface; SIGTERM drains, SIGHUP reloads."""
    from retention.config.overrides import log_config
    from retention.daemon.policy_watch import fingerprint
    from retention.daemon.service import Daemon

    app = app_of(ctx)
    logs.configure(sys.stdout, level="debug" if app.verbose else "info")
    app.every_event = True  # the daemon logs every audit event, as it always has
    settings = app.settings
    log_config(settings, app.config)  # the file read, and each variable that overrode it
    seen = fingerprint(settings.policies_file)  # before the policies are read: a change is seen
    policies, ledger = app.policies, app.ledger

    async def main() -> int:
        daemon = Daemon(settings, policies, ledger, clock=app.now, policies_seen=seen)
        return await daemon.run()

    ctx.exit(asyncio.run(main()))


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's files here (default: a new temporary folder).",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=5),
    default=50,
    show_default=True,
    help="Give up after this many seconds.",
)
def demo(directory: Path | None, timeout: int) -> None:
    """The whole cycle in under a minute on a local stand-in of the provider, no account."""
    from retention.daemon.demo import run_demo

    sys.exit(asyncio.run(run_demo(directory, timeout=timeout, echo=click.echo)))


COMMANDS = [run, demo]
