"""The erasure key: the secret that turns a subject value into its digest (core/subjects.py).

A file like the signing key: 32 random bytes as 64 hex digits, created 0600 on first use and
never replaced (every digest in the ledger depends on it; replicas share the file). A file
that is not private, not a regular file or not 64 hex digits is refused (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from retention.errors import ConfigError
from retention.files import SecretFileError, fsync_folder, read_secret_file
from retention.redaction import register_secret

_cache: dict[Path, tuple[tuple[int, int, int], bytes]] = {}


def subject_key(path: Path | None) -> bytes:
    """The erasure key at `path`, made when missing (read again only when the file changes)."""
    if path is None:
        raise ConfigError("erasure.key_file: no erasure key file is configured")
    if not path.exists():
        _create(path)
    try:
        info = path.stat()
    except OSError:
        info = None
    version = (info.st_ino, info.st_mtime_ns, info.st_size) if info else (0, 0, 0)
    cached = _cache.get(path)
    if cached is not None and cached[0] == version and info is not None:
        return cached[1]
    key = _read(path)
    _cache[path] = (version, key)
    return key


def _read(path: Path) -> bytes:
    """The key in the file, checked."""
    try:
        text = read_secret_file(path).decode("ascii", "replace").strip()
    except SecretFileError as exc:
        raise ConfigError(f"the erasure key {path} {exc}", key="erasure.key_file") from None
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(
            f"the erasure key {path} is not 64 lowercase hex digits", key="erasure.key_file"
        )
    register_secret(text)
    return bytes.fromhex(text)


def _create(path: Path) -> None:
    """Write a new key with mode 0600, unless another process made one first."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        fsync_folder(path.parent)
