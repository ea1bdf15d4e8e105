"""`retention db backup`: an online, consistent copy of the SQLite ledger.

SQLite's backup API copies the database in one read transaction: in WAL mode writers carry on
meanwhile, and the copy is the database as of that transaction's start, every committed write
before it and none after. The copy is written to a private temporary file beside the target,
made a self-contained file (no WAL beside it), synced, and only then given its name: a backup
that fails leaves nothing half-written, and an existing file is replaced only when asked (the
name is taken with a hard link, which never replaces; on a filesystem without hard links, by
creating it exclusively, then renaming the copy over that empty file).
A target that cannot be written for want of permission or a folder is bad usage (exit 2); a
write that fails otherwise (the disk full, an I/O error) is a failed backup (exit 1).
A PostgreSQL ledger is backed up with its own tools (`pg_dump`), never by this command.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote as url_quote

from retention.errors import LedgerError, RetentionError, UsageError
from retention.files import fsync_folder
from retention.ledger.db import sqlite_path
from retention.ledger.diagnosis import where


@dataclass(frozen=True, slots=True)
class Backup:
    """A backup made: the ledger, the copy, its size and each audit chain's head seq in it."""

    database: Path
    file: Path
    bytes: int
    chains: dict[str, int]


def backup_ledger(database_url: str, target: Path, *, force: bool = False) -> Backup:
    """Copy the SQLite ledger `database_url` names to `target` (0600), consistent while other
    processes write to it. UsageError when `target` exists (without `force`), may not be
    written there, or the ledger is not SQLite (the message says how to back PostgreSQL up);
    LedgerError when the ledger cannot be read or the copy cannot be written (disk full)."""
    database = sqlite_path(database_url)
    if database is None:
        raise UsageError(postgres_hint(database_url, target))
    if target.exists() and not force:
        raise UsageError(f"{target} exists; give --force to replace it")
    if target.exists() and not target.is_file():
        raise UsageError(f"{target} is not a regular file")
    if _same_place(target, database):
        raise UsageError(
            f"{target} is the ledger itself (or a file of its own); back it up elsewhere"
        )
    if not database.is_file():
        raise LedgerError(f"ledger {database}: no such file; there is nothing to back up")
    if not target.parent.is_dir():
        raise UsageError(f"{target}: the folder {target.parent} does not exist")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.backup-tmp")
    try:
        chains = _copy(database, temporary)
        if force:
            os.replace(temporary, target)
        else:
            _name_new(temporary, target)
        fsync_folder(target.parent)
    except OSError as exc:
        raise _write_failed(target, exc) from None
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{s}") for s in ("-journal", "-wal"))):
            leftover.unlink(missing_ok=True)
    return Backup(database, target, target.stat().st_size, chains)


def _name_new(temporary: Path, target: Path) -> None:
    """Give the copy `temporary` the name `target`, never replacing a file made there meanwhile:
    a hard link, or where the filesystem has none, an exclusive create then a rename over it."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise UsageError(f"{target} exists; give --force to replace it") from None
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS:
            raise
        _claim_then_replace(temporary, target)
        return
    temporary.unlink()


# what link(2) says on a filesystem without hard links (FAT, some network and FUSE mounts)
NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
)


def _claim_then_replace(temporary: Path, target: Path) -> None:
    """Take the name `target` by creating it exclusively (empty, ours), then rename the copy
    over it; the empty file is removed when that rename fails."""
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise UsageError(f"{target} exists; give --force to replace it") from None
    try:
        os.replace(temporary, target)
    except OSError:
        target.unlink(missing_ok=True)
        raise


# a target this user may not write, or a folder that is not one: the command was given a bad FILE
BAD_TARGET = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
)


def _write_failed(target: Path, exc: OSError) -> RetentionError:
    """The error for a backup that could not be written: bad usage (exit 2) when `target` may
    not be written there; a failed backup (exit 1) otherwise (the disk full, an I/O error)."""
    message = f"{target}: cannot write the backup: {exc.strerror}"
    if exc.errno in BAD_TARGET:
        return UsageError(message)
    return LedgerError(f"{message}; nothing was written")


def _copy(database: Path, temporary: Path) -> dict[str, int]:
    """Copy the ledger into the new private file `temporary`; the audit chains' heads in it."""
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        source = sqlite3.connect(f"file:{url_quote(str(database))}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise LedgerError(f"ledger {database}: cannot open: {exc}") from None
    try:
        copy = sqlite3.connect(temporary)
        try:
            source.backup(copy)  # every page in one step: one consistent read transaction
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            chains = dict(copy.execute("SELECT name, head_seq FROM audit_chains ORDER BY name"))
            copy.commit()
        finally:
            copy.close()
    except sqlite3.Error as exc:  # reading the ledger, or writing the copy (disk full)
        raise LedgerError(
            f"backup of the ledger {database} to {temporary.parent} failed: {exc}; nothing was "
            "written"
        ) from None
    finally:
        source.close()
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return chains


def _same_place(target: Path, database: Path) -> bool:
    """Whether `target` is the ledger or one of SQLite's files beside it."""
    try:
        resolved = target.resolve()
    except OSError:
        return False
    ours = database.resolve()
    return resolved in {ours, *(Path(f"{ours}{s}") for s in ("-wal", "-shm", "-journal"))}


def postgres_hint(database_url: str, target: Path) -> str:
    """What to run instead for a PostgreSQL ledger (the URL shown without its password)."""
    shown = where(database_url)
    return (
        f"the ledger is PostgreSQL ({shown}): back it up with its own tool, "
        f"`pg_dump --format=custom --file={target} --dbname=URL`, and restore with "
        "`pg_restore --clean --if-exists --no-owner --dbname=URL FILE` (see docs/operations.md)"
    )
