"""`retention audit export|verify|pubkey`: the trail for auditors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from retention.cli.app import App, app_of
from retention.cli.commands import config_option
from retention.cli.output import OUTPUT, emit
from retention.core.times import parse_time


@click.group()
def audit() -> None:
    """Export and verify the audit trail; show the checkpoint signing key."""


def _time(value: str | None, name: str) -> Any:
    """Parse an optional --since/--until."""
    return parse_time(value, field=name) if value else None


@audit.command("export")
@click.option("--since", help="Records from this time (RFC 3339 or unix seconds).")
@click.option("--until", help="Records up to this time.")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "-o",
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here, with FILE.manifest.json beside it (default: stdout, no manifest).",
)
@config_option
@click.pass_context
def export(
    ctx: click.Context, since: str | None, until: str | None, fmt: str, out: Path | None
) -> None:
    """The records of a time range with the checkpoints that anchor them, and a manifest."""
    from retention.audit.export import ManifestBuilder, iter_lines, render
    from retention.audit.trailfile import manifest_path

    app = app_of(ctx)
    start, end = _time(since, "--since"), _time(until, "--until")
    manifest = ManifestBuilder()
    handle = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout  # noqa: SIM115
    try:
        with app.ledger.read() as conn:
            for text in render(manifest.track(iter_lines(conn, start, end)), fmt):
                handle.write(text)
                manifest.digest.update(text.encode())
    finally:
        if out:
            handle.close()
    if out is None:
        click.echo("retention: note: no manifest is written without -o FILE", err=True)
        return
    data = manifest.build(
        fmt=fmt, file=out.name, signer=_signer(app), since=start, until=end, now=app.now()
    )
    manifest_path(out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    click.echo(
        f"exported {sum(c['records'] for c in data['chains'].values())} records to "
        f"{out}; manifest {manifest_path(out)}",
        err=True,
    )


def _signer(app: App) -> Any:
    """The checkpoint signer, if its key exists."""
    from retention.audit.signing import Signer

    path = app.settings.audit.signing_key_file
    return Signer.from_file(path, create=False) if path and path.exists() else None


@audit.command("verify")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--pubkey",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Ed25519 public key (PEM) checkpoints must be signed with.",
)
@click.option(
    "--trusted-checkpoint",
    "trusted",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint records kept elsewhere; the trail must reach and match them.",
)
@config_option
@OUTPUT
@click.pass_context
def verify(
    ctx: click.Context, file: Path | None, pubkey: Path | None, trusted: Path | None, output: str
) -> None:
    """Check chain, order, signatures and completeness (the ledger's trail without FILE)."""
    from retention.audit.trailfile import read_checkpoints
    from retention.audit.verifier import verify_records

    records, key, heads, extra = (
        _file_source(file, pubkey) if file else _ledger_source(app_of(ctx), pubkey)
    )
    verdict = verify_records(
        records,
        public_key=key,
        expected_heads=heads,
        trusted=read_checkpoints(trusted) if trusted else (),
    )
    if verdict.sound and extra:
        verdict.fault = extra
    data = verdict.as_dict()
    if output == "json":
        emit(data, output)
    elif verdict.sound:
        checkpoints = sum(c.checkpoints for c in verdict.chains.values())
        click.echo(
            f"sound: {verdict.records} records in {len(verdict.chains)} chain(s), "
            f"{checkpoints} signed checkpoint(s)"
        )
    else:
        click.echo(f"TAMPERED: {data['fault']['message']}")
    for warning in verdict.warnings:
        click.echo(f"warning: {warning}", err=True)
    ctx.exit(0 if verdict.sound else 1)


def _file_source(file: Path, pubkey: Path | None) -> tuple[list[Any], Any, Any, Any]:
    """Records, key, expected heads and a file-level fault for an exported trail."""
    from retention.audit.signing import load_public
    from retention.audit.trailfile import file_sha256, read_manifest, read_records
    from retention.audit.verifier import Fault

    manifest = read_manifest(file)
    key = (
        load_public(pubkey.read_bytes())
        if pubkey
        else (
            load_public(manifest["public_key"]) if manifest and manifest.get("public_key") else None
        )
    )
    heads = {
        name: (c["last_seq"], c["last_hash"])
        for name, c in (manifest or {}).get("chains", {}).items()
    }
    extra = None
    if manifest and manifest.get("sha256") != file_sha256(file):
        extra = Fault("modified", None, None, "the file's SHA-256 differs from the manifest")
    return read_records(file), key, heads, extra


def _ledger_source(app: App, pubkey: Path | None) -> tuple[list[Any], Any, Any, Any]:
    """Records, key and heads of the ledger's own trail."""
    from sqlalchemy import select

    from retention.audit.signing import load_public
    from retention.ledger.models import AuditChain, AuditEvent

    signer = _signer(app)
    key = load_public(pubkey.read_bytes()) if pubkey else (signer.public if signer else None)
    with app.ledger.read() as conn:
        lines = conn.execute(
            select(AuditEvent.line).order_by(AuditEvent.chain, AuditEvent.seq)
        ).scalars()
        records = [json.loads(line) for line in lines]
        heads = {
            n: (s, h)
            for n, s, h in conn.execute(
                select(AuditChain.name, AuditChain.head_seq, AuditChain.head_hash)
            )
        }
    return records, key, heads, None


@audit.command("pubkey")
@config_option
@click.pass_context
def pubkey_cmd(ctx: click.Context) -> None:
    """Print the public key that verifies checkpoint signatures, and its fingerprint."""
    from retention.audit.signing import public_pem
    from retention.errors import AuditError

    signer = _signer(app_of(ctx))
    if signer is None:
        raise AuditError("no signing key yet; `retention run` or `retention sweep` creates it")
    click.echo(public_pem(signer.public), nl=False)
    click.echo(f"# fingerprint {signer.fingerprint}", err=True)


COMMANDS = [audit]


@click.command()
@click.option("--since", help="Deletions from this time (RFC 3339 or unix seconds).")
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
    """Compliance summary: on time and late (lag p50/p99/max), absent, failed, held."""
    from retention.cli.report_view import render_report
    from retention.core.durations import parse_duration
    from retention.errors import UsageError
    from retention.report import compliance_report

    app = app_of(ctx)
    try:
        allowed = parse_duration(tolerance) if tolerance else app.settings.sweep.interval
    except ValueError as exc:
        raise UsageError(f"--tolerance: {exc}") from None
    data = compliance_report(
        app.ledger,
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        tolerance_s=allowed.total_seconds(),
        now=app.now(),
    )
    if output == "json":
        emit(data, output)
    else:
        click.echo(render_report(data, markdown=output == "markdown"))


COMMANDS.append(report)
