"""The `retention` command group; errors become exit codes here and nowhere else."""

from __future__ import annotations

import os
from typing import Any

import click

from retention import __version__
from retention.cli.app import App, configure_logging
from retention.cli.commands import (
    admin,
    audit_cmds,
    daemon_cmds,
    discover_cmd,
    doctor_cmd,
    erasure_cmds,
    erasure_receipt_cmds,
    hold_cmds,
    ledger_cmds,
    receipt_cmds,
    report_cmd,
    retry_cmd,
    sweep_cmd,
    verify_cmds,
)
from retention.errors import RetentionError
from retention.logs import redact

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Group(click.Group):
    """A group whose commands all accept -c/--config, and whose errors exit 1 or 2."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a RetentionError prints one line and sets the exit code."""
        try:
            return super().invoke(ctx)
        except RetentionError as exc:
            click.echo(f"retention: error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # a bug, or input we did not foresee: one line, not a traceback
            if ctx.ensure_object(App).verbose:
                raise
            text = redact(f"{type(exc).__name__}: {exc}")[:300]
            click.echo(f"retention: error: unexpected {text} (-v shows the traceback)", err=True)
            ctx.exit(1)
        finally:
            ctx.ensure_object(App).close()


@click.group(cls=Group, context_settings=CONTEXT)
@click.option(
    "-c",
    "--config",
    "config",
    metavar="FILE",
    envvar=None,
    help="retention.yaml (default: $RETENTION_CONFIG, then ./retention.yaml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every event to stderr.")
@click.version_option(__version__, prog_name="retention")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Enforce retention policies on stored LLM responses, and prove it.

    Exit codes: 0 done, 1 the work failed in part, 2 bad usage, configuration or input.
    """
    os.umask(0o077)  # every file we create (ledger, audit trail, keys) is private
    ctx.obj = App(config=config, verbose=verbose)
    configure_logging(verbose)


for module in (
    ledger_cmds,
    sweep_cmd,
    discover_cmd,
    daemon_cmds,
    audit_cmds,
    report_cmd,
    verify_cmds,
    receipt_cmds,
    doctor_cmd,
    retry_cmd,
    erasure_cmds,
    erasure_receipt_cmds,
    hold_cmds,
    admin,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="retention", standalone_mode=True)


if __name__ == "__main__":
    main()
