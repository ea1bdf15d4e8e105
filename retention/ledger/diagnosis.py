"""What a database failure means to an operator: one line naming the ledger, the reason and
what to do, from the driver's own words (never its parameters, which may hold data)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url

# PostgreSQL's own reason, after the libpq preamble ("connection to server at ... failed:")
_FATAL = re.compile(r"FATAL:\s+(.+)")
_FAILED = re.compile(r"failed:\s+([^\n]+)")


def where(url: URL | str) -> str:
    """The ledger as a user names it: the SQLite file, or the URL without its password."""
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() == "sqlite":
        return str(url.database or url)
    # no query: libpq takes `?password=` and `sslpassword=` there, which must never be shown
    shown = url.set(drivername=url.get_backend_name(), query={})
    return shown.render_as_string(hide_password=True)


def describe(exc: BaseException, url: URL | str, doing: str = "") -> str:
    """`ledger WHERE: [doing: ]reason; hint` for a driver or OS error met while using the
    ledger at `url`."""
    url = make_url(url) if isinstance(url, str) else url
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    if isinstance(orig, OSError) and orig.strerror:
        text = orig.strerror
    reason = (
        _sqlite_reason(text, Path(url.database or ""))
        if url.get_backend_name() == "sqlite"
        else _postgres_reason(text, url)
    )
    reason = reason or f"{type(orig).__name__}: {_first_line(text)}"
    return f"ledger {where(url)}: {doing + ': ' if doing else ''}{reason}"


def _first_line(text: str) -> str:
    """The first line of a driver message, cut short."""
    return (text.splitlines() or [""])[0][:200]


def _sqlite_reason(text: str, path: Path) -> str | None:
    """The reason and hint for an SQLite failure, when it is one a user can fix."""
    lowered = text.lower()
    folder = path.parent
    if "not a database" in lowered:
        return (
            "not an SQLite database (file is not a database); point database_url at the "
            "ledger, or at a file that does not exist yet"
        )
    if "readonly" in lowered or "read-only" in lowered or "permission denied" in lowered:
        return _not_writable(path, folder)
    if "unable to open" in lowered:
        return (
            _not_writable(path, folder)
            if folder.is_dir()
            else (f"cannot open: the folder {folder} does not exist; create it or fix database_url")
        )
    if "disk is full" in lowered or "no space" in lowered:
        return f"the disk is full; free space on the disk holding {folder}"
    if "database is locked" in lowered:
        return (
            "locked by another process for longer than 30 s; wait for it, or stop the "
            "process that holds it"
        )
    if "disk i/o error" in lowered:
        return f"disk I/O error; check the disk holding {folder}"
    return None


def _not_writable(path: Path, folder: Path) -> str:
    """Why SQLite cannot write the ledger file or the journals beside it."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"cannot write: the folder {folder} is read-only for this user (SQLite keeps "
            f"{path.name}-wal and {path.name}-shm beside the ledger, even to read it); give "
            "this user write access to the folder, or point database_url elsewhere"
        )
    return (
        "cannot write: the file is read-only for this user; give this user write access "
        "to it, or point database_url elsewhere"
    )


def _postgres_reason(text: str, url: URL) -> str | None:
    """The reason and hint for a PostgreSQL connection failure."""
    fatal = _FATAL.search(text)
    if fatal:
        reason = fatal.group(1).strip()
        if "database" in reason and "does not exist" in reason:
            return (
                f"{reason}; create it (createdb -h {url.host} -p {url.port or 5432}"
                f"{' -U ' + url.username if url.username else ''} {url.database}) and run "
                "`retention db upgrade`"
            )
        if "role" in reason or "authentication" in reason:
            return f"{reason}; check the user and password in database_url"
        return reason
    if "failed to resolve host" in text:
        return f"{_first_line(text)}; check the host in database_url"
    failed = _FAILED.findall(text)
    if failed and "refused" in failed[-1].lower():
        return (
            f"cannot connect to {url.host}:{url.port or 5432}: connection refused; is "
            "PostgreSQL running and listening there?"
        )
    if failed:
        return f"cannot connect: {failed[-1].strip()}"
    return None
