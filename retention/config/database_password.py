"""`database_password_file`: the PostgreSQL password kept in a file of its own, out of the URL.

A Kubernetes Secret or a systemd credential is a file; the URL (user, host, database) stays in
`retention.yaml` for anyone to read, and the password is read from the file when the settings
load, with the rules of every secret file (private to this user, a regular file), and
registered so that no log line or error shows it. The password is taken as the file holds it,
without URL escaping; one line break at its end is dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from retention.files import SecretFileError, read_secret_file
from retention.redaction import register_secret

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def with_password(url: str, path: Path) -> str:
    """`url` (postgresql, without a password) with the password the file at `path` holds;
    ValueError saying what is wrong (the caller names the key and its line)."""
    from sqlalchemy.engine import make_url  # not at import: `audit verify` needs no SQLAlchemy

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("only a postgresql:// database_url takes a password")
    if parsed.password is not None or "password" in parsed.query:
        raise ValueError("the database URL holds a password already; keep it in one place")
    password = read_password(path)
    return parsed.set(password=password).render_as_string(hide_password=False)


def read_password(path: Path) -> str:
    """The password in the file: private, UTF-8, one line; ValueError naming the file."""
    what = f"the database password file {path}"
    try:
        data = read_secret_file(path)
    except SecretFileError as exc:
        raise ValueError(f"{what} {exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError(f"{what} is empty")
    register_secret(password)
    if _CONTROL.search(password):
        raise ValueError(f"{what} holds a line break or another control character")
    return password
