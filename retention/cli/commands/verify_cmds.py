"""`retention audit verify`: check a trail against a pinned key, as an auditor does.

FILE mode needs no configuration, no ledger and no database driver: an auditor runs it with the
package alone. Several FILEs are one trail kept in several files (the rotated audit files,
oldest first, the live one last): verified as one, a gap between two files named. The ledger
mode reads the configured ledger's own trail.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from retention.cli.app import App, app_of
from retention.cli.commands import config_option
from retention.cli.commands.audit_cmds import audit, parse_optional_time, signer_of
from retention.cli.output import OUTPUT, emit

KEY_HELP = "The Ed25519 public key (PEM file) checkpoints must be signed with."
FINGERPRINT_HELP = "The trusted key's fingerprint (sha256:HEX); the manifest's key must match it."


def trusted_key_options(func: Any) -> Any:
    """`--pubkey PEM` and `--fingerprint sha256:HEX`: how the auditor pins the key."""
    func = click.option("--fingerprint", metavar="sha256:HEX", help=FINGERPRINT_HELP)(func)
    return click.option("--pubkey", type=click.Path(dir_okay=False, path_type=Path), help=KEY_HELP)(
        func
    )


def pinned_key(pubkey: Path | None, fingerprint: str | None, offered: list[Any]) -> Any:
    """The trusted public key: the PEM given, or the offered key (a manifest's or a receipt's)
    whose fingerprint matches the one given. Never an offered key on its own say-so."""
    from retention.audit.signatures import fingerprint as fingerprint_of
    from retention.audit.signatures import load_public, load_public_or_none
    from retention.errors import InputError, UsageError

    if pubkey is not None:
        try:
            key = load_public(pubkey.read_bytes())
        except OSError as exc:
            raise InputError(f"{pubkey}: cannot read: {exc.strerror}") from None
        if fingerprint and fingerprint_of(key) != fingerprint:
            raise UsageError(f"{pubkey} does not have the fingerprint {fingerprint}")
        return key
    if fingerprint is None:
        return None
    for pem in offered:
        candidate = load_public_or_none(pem)
        if candidate is not None and fingerprint_of(candidate) == fingerprint:
            return candidate
    raise UsageError(f"no key with fingerprint {fingerprint} here; give it with --pubkey PEM")


def kept_checkpoint_options(func: Any) -> Any:
    """`--trusted-checkpoint FILE` and `--witness PATH`, both repeatable: checkpoints the
    auditor kept, that the evidence must agree with."""
    func = click.option(
        "--witness",
        "witnesses",
        multiple=True,
        type=click.Path(path_type=Path),
        help="A witness's checkpoint file, or a folder of them; treated as trusted checkpoints.",
    )(func)
    return click.option(
        "--trusted-checkpoint",
        "trusted",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Checkpoint records kept earlier; the evidence must agree with each.",
    )(func)


@audit.command("verify")
@click.argument(
    "files", nargs=-1, metavar="[FILE]...", type=click.Path(dir_okay=False, path_type=Path)
)
@trusted_key_options
@click.option(
    "--hash-only",
    is_flag=True,
    help="Check hashes and links only, without a key (signatures are NOT checked).",
)
@kept_checkpoint_options
@click.option("--since", help="Ledger mode: from the checkpoint at or before this time.")
@click.option("--until", help="Ledger mode: to the first checkpoint at or after this time.")
@config_option
@OUTPUT
@click.pass_context
def verify(
    ctx: click.Context,
    files: tuple[Path, ...],
    pubkey: Path | None,
    fingerprint: str | None,
    hash_only: bool,
    trusted: tuple[Path, ...],
    witnesses: tuple[Path, ...],
    since: str | None,
    until: str | None,
    output: str,
) -> None:
    """Check hashes, links, Merkle roots, signatures and coverage of a trail (the ledger's own
    without FILE; several FILEs, oldest first, are one trail: the rotated audit files and the
    live one last, `audit.*.jsonl audit.jsonl`); exit 1 naming the first fault and its file."""
    from retention.errors import UsageError
    from retention.evidence.trailfile import read_checkpoints

    kept = [r for path in (*trusted, *witnesses) for r in read_checkpoints(path)]
    if files:
        if since or until:
            raise UsageError("--since/--until narrow the ledger's trail; an export has its range")
        if len(files) == 1:
            verdict = _verify_file(files[0], pubkey, fingerprint, hash_only, kept)
        else:
            verdict = _verify_files(files, pubkey, fingerprint, hash_only, kept)
    else:
        verdict = _verify_ledger(app_of(ctx), pubkey, fingerprint, hash_only, kept, since, until)
    _show(verdict, output)
    ctx.exit(0 if verdict.sound else 1)


def _verify_file(
    file: Path, pubkey: Path | None, fingerprint: str | None, hash_only: bool, kept: list[Any]
) -> Any:
    """An exported trail, with its manifest when there is one."""
    from retention.audit.merkle import Frontier
    from retention.audit.verifier import Anchors, Fault, Verdict, as_dict, verify_records
    from retention.errors import InputError, UsageError
    from retention.evidence.trailfile import (
        file_sha256,
        iter_records,
        locator,
        read_manifest,
        transitions_in,
    )

    manifest = read_manifest(file) or {}
    key = pinned_key(pubkey, fingerprint, [manifest.get("public_key")])
    if key is None and not hash_only:
        raise UsageError(
            "audit verify FILE needs the key you trust: --pubkey PEM or --fingerprint "
            "sha256:HEX (or --hash-only to check hashes and links alone)"
        )
    if manifest and manifest.get("sha256") != file_sha256(file):
        return Verdict(
            Fault("modified", None, None, "the file's SHA-256 differs from the manifest")
        )
    chains = as_dict(manifest.get("chains"))
    try:
        anchors = Anchors(
            key=key,
            frontiers={
                name: Frontier.from_hex(c["frontier"]["size"], c["frontier"]["hashes"])
                for name, c in chains.items()
                if isinstance(c, dict) and "frontier" in c
            },
            consistency={
                name: [c["consistency"], *_list(c.get("consistency_proofs"))]
                for name, c in chains.items()
                if "consistency" in c
            },
            expected_heads={n: (c["last_seq"], c["last_hash"]) for n, c in chains.items()},
            checkpoints=kept,
            transitions=[*transitions_in(file), *_list(manifest.get("key_transitions"))],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{file}: the manifest is malformed: {exc!s:.200}") from None
    return verify_records(iter_records(file), anchors, located=locator(file))


def _verify_files(
    files: tuple[Path, ...],
    pubkey: Path | None,
    fingerprint: str | None,
    hash_only: bool,
    kept: list[Any],
) -> Any:
    """Rotated audit files, oldest first, verified as one trail: each chain goes on from the
    file where it was last seen. Files given twice, or whose first records show they are out of
    order, are refused (exit 2); what reading them finds out of order is a fault (exit 1)."""
    from retention.audit.verifier import Anchors, verify_parts
    from retention.errors import UsageError
    from retention.evidence.trailfile import iter_records, locator, read_manifest, transitions_in

    for file in files:
        if read_manifest(file) is not None:
            raise UsageError(
                f"{file} is an export with a manifest: verify it alone (several files are "
                "the rotated files of one audit trail)"
            )
    _refuse_disorder(files)
    key = pinned_key(pubkey, fingerprint, [])
    if key is None and not hash_only:
        raise UsageError(
            "audit verify FILE... needs the key you trust: --pubkey PEM (or --hash-only to "
            "check hashes and links alone)"
        )
    anchors = Anchors(
        key=key, checkpoints=kept, transitions=[t for f in files for t in transitions_in(f)]
    )
    finders = [locator(file) for file in files]
    verdict = verify_parts(
        ((str(file), iter_records(file)) for file in files),
        anchors,
        located=lambda chain, seq: any(found(chain, seq) for found in finders),
    )
    fault = verdict.fault
    if fault is not None and fault.kind == "unanchored_start" and fault.file == str(files[0]):
        verdict.fault = replace(
            fault,
            detail=f"{fault.detail} (the chain's earlier files are not given: give every file "
            "from its first, or check with --hash-only)",
        )
    return verdict


def _refuse_disorder(files: tuple[Path, ...]) -> None:
    """Refuse, before reading them through, a file given twice (by two names, or as a copy
    with the same bytes), or files whose first records show they are out of order: a later
    file's chain starting before every file given ahead of it starts it. (A later file may
    start inside the seqs of earlier ones: it repeats them, which reading checks.)"""
    from retention.errors import UsageError
    from retention.evidence.trailfile import file_sha256, iter_records

    seen: dict[Path, Path] = {}
    for file in files:
        if file.resolve() in seen:
            before = seen[file.resolve()]
            also = "" if before == file else f" (as {before} too)"
            raise UsageError(f"{file} is given twice{also}")
        seen[file.resolve()] = file
    alike: dict[tuple[int, bytes], list[Path]] = {}  # by size and first line
    for file in files:
        size = file.stat().st_size if file.is_file() else 0
        if size:
            alike.setdefault((size, _first_line(file)), []).append(file)
    for group in alike.values():
        copies: dict[str, Path] = {}
        for file in group if len(group) > 1 else []:
            same = copies.setdefault(file_sha256(file), file)
            if same != file:
                raise UsageError(f"{file} is given twice (a copy of {same}, byte for byte)")
    earliest: dict[str, tuple[int, Path]] = {}  # chain -> the lowest start given so far
    for file in files:
        first = next(iter_records(file), None)  # the generator, dropped, closes the file
        chain, seq = (first.get("chain"), first.get("seq")) if isinstance(first, dict) else (0, 0)
        if not isinstance(chain, str) or type(seq) is not int:
            continue
        if chain in earliest and seq < earliest[chain][0]:
            start, earlier = earliest[chain]
            raise UsageError(
                f"{file}: chain {chain} starts at seq {seq}, before {earlier} (given ahead of "
                f"it, starting at seq {start}): give the files oldest first, each once (rotated "
                "files by their number, the live file last)"
            )
        if chain not in earliest:
            earliest[chain] = (seq, file)


def _first_line(file: Path) -> bytes:
    """The start of a file's first line; an InputError naming it when it cannot be read."""
    from retention.errors import InputError

    try:
        with open(file, "rb") as handle:
            return handle.readline(65536)
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror}") from None


def _verify_ledger(
    app: App,
    pubkey: Path | None,
    fingerprint: str | None,
    hash_only: bool,
    kept: list[Any],
    since: str | None,
    until: str | None,
) -> Any:
    """The ledger's own trail, under the configured key's public half unless one is given; the
    last checkpoint the ledger remembers of each chain must be in it unchanged."""
    from sqlalchemy import select

    from retention.audit.signatures import load_public_or_none
    from retention.audit.verifier import Anchors, verify_records
    from retention.evidence.checkpoints import remembered, transitions
    from retention.evidence.export import chain_bounds, consistency, frontiers, iter_lines
    from retention.evidence.key_rotation import first_key
    from retention.ledger.models import AuditChain

    signer = None if (pubkey or fingerprint or hash_only) else signer_of(app)
    key = pinned_key(pubkey, fingerprint, [])
    if signer is not None:  # the key the trail started with; rotations lead on from it
        key = load_public_or_none(first_key(app.ledger)) or signer.public
    start, end = parse_optional_time(since, "--since"), parse_optional_time(until, "--until")
    with app.ledger.read() as conn:
        bounds = chain_bounds(conn, start, end)
        heads = select(AuditChain.name, AuditChain.head_seq, AuditChain.head_hash)
        to_the_end = end is None  # then the heads, and the last checkpoints, must be reached
        anchors = Anchors(
            key=key,
            frontiers=frontiers(conn, bounds),
            consistency=consistency(conn, bounds, kept),
            expected_heads={n: (s, h) for n, s, h in conn.execute(heads)} if to_the_end else {},
            checkpoints=[*kept, *(remembered(app.ledger) if to_the_end else [])],
            transitions=transitions(conn),
        )
        records = (json.loads(line) for line in iter_lines(conn, bounds))
        verdict = verify_records(records, anchors, strict_ends=False)
    if key is None:
        verdict.warnings.append("no signing key is configured: signatures were not checked")
    return verdict


def _list(value: Any) -> list[Any]:
    """`value` when it is a list (a manifest's field), else nothing."""
    return value if isinstance(value, list) else []


def _show(verdict: Any, output: str) -> None:
    """Print the verdict: one line, or JSON; warnings to stderr."""
    data = verdict.as_dict()
    if output == "json":
        emit(data, output)
    elif verdict.sound:
        checkpoints = sum(c.checkpoints for c in verdict.chains.values())
        how = (
            "hashes and links only, signatures NOT checked"
            if verdict.hash_only
            else f"{checkpoints} signed checkpoint(s)"
        )
        click.echo(f"sound: {verdict.records} records in {len(verdict.chains)} chain(s), {how}")
    else:
        click.echo(f"TAMPERED: {data['fault']['message']}")
    for warning in verdict.warnings:
        click.echo(f"warning: {warning}", err=True)


COMMANDS: list[click.Command] = []
