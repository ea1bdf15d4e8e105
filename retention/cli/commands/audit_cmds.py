"""`retention audit export|pubkey|rotate-key`: the trail for auditors, and the signing key."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from retention.cli.app import App, app_of
from retention.cli.commands import TIME_HELP, config_option, parse_optional_time
from retention.cli.output import OUTPUT, emit


@click.group()
def audit() -> None:
    """Export and verify the audit trail, issue deletion receipts, manage the signing key."""


def out_options(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--out/-O FILE`, and the deprecated `-o FILE` it replaced (across commands `-o` is
    `--output`, the format): `-o` still names the file, with a warning."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        """Add both options to `func`."""
        func = click.option(
            "-o", "legacy_out", hidden=True, type=click.Path(dir_okay=False, path_type=Path)
        )(func)
        return click.option(
            "--out",
            "-O",
            "out",
            type=click.Path(dir_okay=False, path_type=Path),
            help=help_text + " (-o FILE still works, deprecated)",
        )(func)

    return wrap


def chosen_out(command: str, out: Path | None, legacy: Path | None) -> Path | None:
    """The file of `--out`, or of the deprecated `-o` with a warning; both is a usage error."""
    from retention.errors import UsageError

    if legacy is None:
        return out
    if out is not None:
        raise UsageError(f"{command}: give --out FILE only (-o FILE is its deprecated spelling)")
    click.echo(
        f"retention: warning: `{command} -o FILE` is deprecated; use --out FILE (-O FILE): "
        "across commands -o is --output, the format",
        err=True,
    )
    return legacy


@audit.command("export")
@click.option("--since", help=f"Records from this time ({TIME_HELP}).")
@click.option("--until", help="Records up to this time.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@out_options("Write here, with FILE.manifest.json beside it (default: stdout, no manifest).")
@click.option(
    "--since-checkpoint",
    "held",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoints the auditor holds: the manifest proves the export extends them.",
)
@config_option
@click.pass_context
def export(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    fmt: str,
    out: Path | None,
    legacy_out: Path | None,
    held: tuple[Path, ...],
) -> None:
    """The records of a time range with the checkpoints that anchor them, and a manifest."""
    from retention.evidence.checkpoints import transitions
    from retention.evidence.export import (
        ManifestBuilder,
        chain_bounds,
        consistency,
        frontiers,
        iter_lines,
        render,
    )
    from retention.evidence.trailfile import manifest_path, read_checkpoints

    app = app_of(ctx)
    out = chosen_out("audit export", out, legacy_out)
    start = parse_optional_time(since, "--since")
    end = parse_optional_time(until, "--until")
    kept = [r for path in held for r in read_checkpoints(path)]
    signer = signer_of(app)
    _cover_tails(app, signer)
    manifest = ManifestBuilder()
    handle = _open_out(out)
    try:
        with app.ledger.read() as conn:
            bounds = chain_bounds(conn, start, end)
            for text in render(manifest.track(iter_lines(conn, bounds)), fmt):
                handle.write(text)
                manifest.digest.update(text.encode())
            starts, proofs = frontiers(conn, bounds), consistency(conn, bounds, kept)
            handovers = transitions(conn)
    finally:
        if out:
            handle.close()
    if out is None:
        click.echo("retention: note: no manifest is written without --out FILE", err=True)
        return
    data = manifest.build(
        fmt=fmt,
        file=out.name,
        signer=signer,
        since=start,
        until=end,
        now=app.now(),
        starts=starts,
        proofs=proofs,
        transitions=handovers,
    )
    manifest_path(out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    click.echo(
        f"exported {sum(c['records'] for c in data['chains'].values())} records to "
        f"{out}; manifest {manifest_path(out)}",
        err=True,
    )


def _open_out(out: Path | None) -> Any:
    """The export's file opened for writing (UsageError naming it when it cannot be), or
    stdout."""
    from retention.errors import UsageError

    if out is None:
        return sys.stdout
    try:
        return open(out, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write: {exc.strerror}") from None


def _cover_tails(app: App, signer: Any) -> None:
    """Sign every chain whose last record no checkpoint covers yet, so the export ends signed."""
    from retention.evidence.checkpoints import uncovered_chains, write_checkpoint

    tails = uncovered_chains(app.ledger)
    if tails and signer is None:
        click.echo("retention: warning: no signing key; the export ends unsigned", err=True)
        return
    for chain in tails:
        write_checkpoint(
            app.ledger,
            signer,
            app.settings.audit.checkpoint_interval,
            chain=chain,
            publish=app.publish_checkpoint,
        )


def signer_of(app: App) -> Any:
    """The checkpoint signer, if its key exists (refused when others may read it)."""
    from retention.evidence.signing_key import Signer

    path = app.settings.audit.signing_key_file
    return Signer.from_file(path, create=False) if path and path.exists() else None


@audit.command("pubkey")
@config_option
@click.pass_context
def pubkey_cmd(ctx: click.Context) -> None:
    """Print the public key that verifies checkpoint signatures, and its fingerprint."""
    from retention.audit.signatures import public_pem
    from retention.errors import AuditError

    signer = signer_of(app_of(ctx))
    if signer is None:
        raise AuditError("no signing key yet; `retention run` or `retention sweep` creates it")
    click.echo(public_pem(signer.public), nl=False)
    click.echo(f"# fingerprint {signer.fingerprint}", err=True)


@audit.command("rotate-key")
@config_option
@OUTPUT
@click.pass_context
def rotate_key(ctx: click.Context, output: str) -> None:
    """Replace the signing key: every chain gets a checkpoint, signed by the old key, that names
    the new one; later checkpoints are signed by the new key."""
    from retention.audit.signatures import public_pem
    from retention.errors import UsageError
    from retention.evidence.key_rotation import rotate

    app = app_of(ctx)
    path = app.settings.audit.signing_key_file
    if path is None:
        raise UsageError("audit.signing_key_file is not configured")
    old, new, chains = rotate(app.ledger, path, app.settings.audit, publish=app.publish_checkpoint)
    data = {
        "old_fingerprint": old.fingerprint,
        "new_fingerprint": new.fingerprint,
        "chains": chains,
        "public_key": public_pem(new.public),
    }
    if output == "json":
        emit(data, output)
        return
    click.echo(f"rotated: {old.fingerprint} -> {new.fingerprint} on {len(chains)} chain(s)")
    click.echo(data["public_key"], nl=False)


COMMANDS: list[click.Command] = [audit]
