"""Administration: `policies check|diff`, `db upgrade` and `db backup`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit
from retention.config.policyfile import load_policies
from retention.core.durations import format_duration


@click.group()
def policies() -> None:
    """Validate retention policies, and preview a change."""


@policies.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@config_option
@OUTPUT
@click.pass_context
def policies_check(ctx: click.Context, file: Path | None, output: str) -> None:
    """Validate a policies file (default: the one retention.yaml names)."""
    path = file or app_of(ctx).settings.policies_file
    loaded = load_policies(path)
    data: dict[str, Any] = {
        "file": str(path),
        "valid": True,
        "digest": loaded.digest(),
        "policies": [
            {"name": p.name, "ttl": format_duration(p.ttl), "match": p.match.describe()}
            for p in loaded.policies
        ],
        "default_ttl": format_duration(loaded.default.ttl),
        "holds": [h.name for h in loaded.holds],
    }
    if output == "json":
        emit(data, output)
        return
    click.echo(
        f"{path}: ok: {len(loaded.policies)} policies, default TTL "
        f"{data['default_ttl']}, {len(loaded.holds)} holds"
    )
    for item in data["policies"]:
        click.echo(f"  {item['name']:<20} {item['ttl']:>6}  {item['match']}")


@policies.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@config_option
@OUTPUT
@click.pass_context
def policies_diff(ctx: click.Context, old: Path, new: Path, output: str) -> None:
    """How many ledger records a change from OLD to NEW makes due now, per policy."""
    from retention.services.policies_in_force import policies_in_force
    from retention.views.policy_diff import diff

    app = app_of(ctx)
    data = diff(
        app.ledger,
        policies_in_force(app.settings, old),
        policies_in_force(app.settings, new),
        app.now(),
    )
    if output == "json":
        emit(data, output)
        return
    click.echo(
        f"{data['newly_due_total']} of {data['records']} open records would be due now "
        f"under {new} (not under {old})"
    )
    for name, count in sorted(data["newly_due"].items()):
        click.echo(f"  {name:<20} {count}")
    click.echo(
        f"deadlines changed {data['deadline_changed']}, newly held {data['newly_held']}, "
        f"released {data['released']}, no longer due "
        f"{sum(data['no_longer_due'].values())}"
    )


@click.group()
def db() -> None:
    """Manage the ledger database."""


@db.command("upgrade")
@config_option
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply the ledger's migrations (`run` and the SQLite default do it by themselves)."""
    from retention.ledger.db import current_revision, make_engine, upgrade

    engine = make_engine(app_of(ctx).settings.database_url)
    try:
        before = current_revision(engine)
        upgrade(engine)
        click.echo(f"ledger schema: {before or 'empty'} -> {current_revision(engine)}")
    finally:
        engine.dispose()


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@config_option
@OUTPUT
@click.pass_context
def db_backup(ctx: click.Context, file: Path, force: bool, output: str) -> None:
    """Copy the SQLite ledger to FILE (0600) while other processes write to it: a consistent
    copy, audit trail included. Restore by copying it over the ledger with retention stopped.
    A PostgreSQL ledger is backed up with pg_dump (exit 2 says how)."""
    from retention.ledger.backup import backup_ledger

    made = backup_ledger(app_of(ctx).settings.database_url, file, force=force)
    data = {
        "database": str(made.database),
        "file": str(made.file),
        "bytes": made.bytes,
        "chains": made.chains,
    }
    if output == "json":
        emit(data, output)
        return
    heads = ", ".join(f"{name} at seq {seq}" for name, seq in made.chains.items()) or "none"
    click.echo(
        f"backed up the ledger {made.database} to {made.file} ({made.bytes} bytes; audit "
        f"chains: {heads})"
    )


COMMANDS = [policies, db]
