"""Only one sweeper at a time on an embedded SQLite ledger."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retention.errors import SweeperBusyError


@contextmanager
def sweeper_lock(db_path: Path) -> Iterator[None]:
    """Hold `<ledger>.lock` exclusively, or refuse at once naming the holder."""
    lock_path = db_path.with_name(db_path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise SweeperBusyError(
                f"another retention process (pid {holder}) is sweeping {db_path}; one SQLite "
                "ledger takes one sweeper (use PostgreSQL for several replicas)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
