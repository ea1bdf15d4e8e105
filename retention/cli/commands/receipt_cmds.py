"""`retention audit receipt` and `audit verify-receipt`: deletion receipts for data subjects.

`verify-receipt` needs no configuration, no ledger and no database driver: whoever holds a
receipt checks it with the package (or the guide's thirty lines) and the pinned public key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from retention.cli.app import app_of
from retention.cli.commands import config_option
from retention.cli.commands.audit_cmds import audit, chosen_out, out_options, signer_of
from retention.cli.commands.verify_cmds import (
    kept_checkpoint_options,
    pinned_key,
    trusted_key_options,
)
from retention.cli.output import OUTPUT, emit

FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


@audit.command("receipt", short_help="Issue the deletion receipt of one response ID.")
@click.argument("response_id", metavar="ID")
@out_options("Write the receipt here (created 0600; default: stdout).")
@config_option
@click.pass_context
def receipt(
    ctx: click.Context, response_id: str, out: Path | None, legacy_out: Path | None
) -> None:
    """A deletion receipt for ID: its latest response.deleted or response.absent record, a
    signed checkpoint that covers it (written first when none does yet) and the Merkle proof
    between them. Anyone holding the public key checks it with `audit verify-receipt`."""
    from retention.audit.receipt_format import receipt_text
    from retention.evidence.receipts import issue_receipt

    app = app_of(ctx)
    out = chosen_out("audit receipt", out, legacy_out)
    data = issue_receipt(
        app.ledger,
        response_id,
        signer=signer_of(app),
        interval=app.settings.audit.checkpoint_interval,
        publish=app.publish_checkpoint,
    )
    text = receipt_text(data)
    if out is None:
        click.echo(text, nl=False)
        return
    write_private(out, text)
    click.echo(
        f"receipt for {response_id} written to {out}: seq {data['record']['seq']} in a tree "
        f"of {data['tree_size']} records signed at seq {data['checkpoint']['seq']}",
        err=True,
    )


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 (an existing file is replaced and made 0600)."""
    from retention.errors import UsageError

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None


@audit.command("verify-receipt", short_help="Check a deletion receipt against the key you trust.")
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
    """Check a deletion receipt offline against the key you trust (--pubkey, or --fingerprint
    to accept the receipt's own key only if it matches); with --witness or
    --trusted-checkpoint, its checkpoint must also be one of those. Exit 0 when valid, 1
    naming what failed. Needs no configuration."""
    from retention.audit.receipt_format import check_receipt, witnessed
    from retention.evidence.trailfile import read_checkpoints

    kept = [r for path in (*trusted, *witnesses) for r in read_checkpoints(path)]
    text = read_text(file)
    key, reason = trusted_key(text, pubkey, fingerprint)
    if text is None:
        reason = "the receipt is not UTF-8 text"
    elif key is not None:
        reason = check_receipt(text, key)
        if reason is None and kept:
            reason = witnessed(text, kept)
    _show(_verdict(text, reason), output)
    ctx.exit(0 if reason is None else 1)


def read_text(file: Path) -> str | None:
    """The file's text; None when it is not UTF-8 (then it is no receipt)."""
    from retention.errors import InputError

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def trusted_key(
    text: str | None,
    pubkey: Path | None,
    fingerprint: str | None,
    command: str = "audit verify-receipt",
) -> tuple[Any, str | None]:
    """The pinned key, or None and why the receipt fails (UsageError when none is pinned)."""
    import json

    from retention.errors import UsageError

    if pubkey is None and fingerprint is None:
        raise UsageError(
            f"{command} needs the key you trust: --pubkey PEM or --fingerprint sha256:HEX"
        )
    if fingerprint is not None and FINGERPRINT.fullmatch(fingerprint) is None:
        raise UsageError(f"--fingerprint: expected sha256: and 64 lowercase hex, got {fingerprint}")
    if pubkey is not None:
        return pinned_key(pubkey, fingerprint, []), None
    try:
        offered = json.loads(text or "").get("public_key")
    except (ValueError, RecursionError, AttributeError):
        offered = None
    try:
        return pinned_key(None, fingerprint, [offered]), None
    except UsageError:
        return None, f"the receipt's public_key does not have the fingerprint {fingerprint}"


def _verdict(text: str | None, reason: str | None) -> dict[str, Any]:
    """What the check found, as data; the receipt's facts only when it is valid."""
    import json

    if text is None or reason is not None:
        return {"valid": False, "reason": reason}
    data = json.loads(text)
    record, checkpoint = data["record"], data["checkpoint"]
    return {
        "valid": True,
        "response_id": record["response_id"],
        "outcome": record["event"].removeprefix("response."),
        "ts": record["ts"],
        "chain": record["chain"],
        "seq": record["seq"],
        "tree_size": data["tree_size"],
        "checkpoint_seq": checkpoint["seq"],
        "checkpoint_ts": checkpoint["ts"],
        "key_fingerprint": checkpoint["details"]["key_fingerprint"],
    }


def _show(verdict: dict[str, Any], output: str) -> None:
    """One line, or JSON."""
    if output == "json":
        emit(verdict, output)
    elif verdict["valid"]:
        click.echo(
            f"valid: {verdict['response_id']} {verdict['outcome']} at {verdict['ts']}, in chain "
            f"{verdict['chain']} at seq {verdict['seq']} of a signed tree of "
            f"{verdict['tree_size']} records"
        )
    else:
        click.echo(f"INVALID: {verdict['reason']}")


COMMANDS: list[click.Command] = []
