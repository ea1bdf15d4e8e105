"""`retention erasure receipt` and `erasure verify-receipt`: the bundle a data subject checks.

`verify-receipt` needs no configuration, no ledger and no database driver: whoever holds an
erasure receipt checks it with the package and the pinned public key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.commands.audit_cmds import chosen_out, out_options, signer_of
from retention.cli.commands.erasure_cmds import erasure
from retention.cli.commands.receipt_cmds import read_text, trusted_key, write_private
from retention.cli.commands.verify_cmds import (
    kept_checkpoint_options,
    trusted_key_options,
)
from retention.cli.output import OUTPUT, emit


@erasure.command("receipt", short_help="Issue the receipt of a completed erasure request.")
@click.argument("erasure_id", metavar="ID")
@out_options("Write the receipt here (created 0600; default: stdout).")
@config_option
@click.pass_context
def receipt(ctx: click.Context, erasure_id: str, out: Path | None, legacy_out: Path | None) -> None:
    """The receipt of erasure request ID, once it is completed: the signed proofs of its
    erasure.requested and erasure.completed records, the list of its records with what became
    of each (whose digest the completion signs), a deletion receipt for each of them deleted or
    absent, and the records withheld by a hold. It names the subject by digest only. Anyone
    holding the public key checks it with `erasure verify-receipt`."""
    from retention.audit.erasure_receipt_format import erasure_receipt_text
    from retention.evidence.erasure_receipts import issue_erasure_receipt

    app = app_of(ctx)
    out = chosen_out("erasure receipt", out, legacy_out)
    data = issue_erasure_receipt(
        app.ledger,
        erasure_id,
        signer=signer_of(app),
        interval=app.settings.audit.checkpoint_interval,
        publish=app.publish_checkpoint,
    )
    text = erasure_receipt_text(data)
    if out is None:
        click.echo(text, nl=False)
        return
    write_private(out, text)
    counts = data["completed"]["record"]["details"]
    click.echo(
        f"receipt of erasure {erasure_id} written to {out}: {len(data['receipts'])} deletion "
        f"receipts ({counts['deleted']} deleted, {counts['absent']} absent), "
        f"{len(data['withheld'])} withheld, {counts['failed']} failed",
        err=True,
    )


@erasure.command("verify-receipt", short_help="Check an erasure receipt against the key you trust.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@trusted_key_options
@kept_checkpoint_options
@OUTPUT
@click.pass_context
def verify_receipt(
    ctx: click.Context,
    file: Path,
    pubkey: Path | None,
    fingerprint: str | None,
    trusted: tuple[Path, ...],
    witnesses: tuple[Path, ...],
    output: str,
) -> None:
    """Check an erasure receipt offline against the key you trust (--pubkey, or --fingerprint
    to accept the receipt's own key only if it matches); with --witness or
    --trusted-checkpoint, each of its checkpoints must also be one of those. Exit 0 when
    valid, 1 naming what failed. Needs no configuration."""
    from retention.audit.erasure_receipt_format import check_erasure_receipt, erasure_witnessed
    from retention.evidence.trailfile import read_checkpoints

    kept = [r for path in (*trusted, *witnesses) for r in read_checkpoints(path)]
    text = read_text(file)
    key, reason = trusted_key(text, pubkey, fingerprint, "erasure verify-receipt")
    if text is None:
        reason = "the erasure receipt is not UTF-8 text"
    elif key is not None:
        reason = check_erasure_receipt(text, key)
        if reason is None and kept:
            reason = erasure_witnessed(text, kept)
    _show(_verdict(text, reason), output)
    ctx.exit(0 if reason is None else 1)


def _verdict(text: str | None, reason: str | None) -> dict[str, Any]:
    """What the check found, as data; the receipt's facts only when it is valid."""
    import json

    from retention.audit.erasure_receipt_format import erasure_facts

    if text is None or reason is not None:
        return {"valid": False, "reason": reason}
    return {"valid": True, **erasure_facts(json.loads(text))}


def _show(verdict: dict[str, Any], output: str) -> None:
    """A few lines, or JSON."""
    if output == "json":
        emit(verdict, output)
        return
    if not verdict["valid"]:
        click.echo(f"INVALID: {verdict['reason']}")
        return
    click.echo(
        f"valid: erasure {verdict['erasure_id']} requested at {verdict['requested_at']}, "
        f"completed at {verdict['completed_at']}: {verdict['matched']} records, "
        f"{verdict['deleted']} deleted, {verdict['absent']} absent, {verdict['failed']} failed, "
        f"{verdict['withheld']} withheld"
    )
    deletions = verdict["linked"] + verdict["unlinked"]
    line = f"  every record is in the list the completion signs; {verdict['linked']} of the "
    line += f"{deletions} deletions name this request"
    if verdict["unlinked"]:
        line += ", the others were gone before it or deleted at their own deadline"
    click.echo(line)
    for entry in verdict["failed_records"]:
        click.echo(f"  failed: {entry['response_id']} ({entry['provider']})")
    for item in verdict["withheld_records"]:
        click.echo(f"  withheld: {item['response_id']} ({item['provider']}) by hold {item['hold']}")


COMMANDS: list[click.Command] = []
