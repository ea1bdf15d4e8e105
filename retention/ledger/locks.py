"""Locks between processes sharing one ledger: one sweeper at a time on an embedded SQLite
ledger, and the policies lock that orders every change of the policies in force.

The policies lock. The ledger records the digest of the policies it applies (the file's, joined
by the holds placed in the ledger), and each open record's hold follows from them. Whoever
reads them and then writes from what it read must not interleave with another doing the same:
a policy sync re-planning records batch by batch while a hold is placed would undo the hold
(and write a false `response.released`); two holds placed at once would each write a digest
naming only its own; an ID recorded while a hold naming it is placed would come in pending,
the hold's transaction unable to see it. So, first thing in their transaction:

- exclusively (`policies_changing`): a policy sync's write, placing and lifting a hold (by
  hand or by its `until`): what changes the digest or the set of holds;
- shared (`policies_steady`): what decides records' holds from the holds as they stand,
  without changing them: enrolment, an erasure request, the last look holding a record that
  escaped. Shared holders run side by side (ingest keeps its parallel group commits).

On PostgreSQL it is a transaction-level advisory lock, released at commit or rollback, one
statement (a shared holder waits only while a hold is placed or lifted, or policies applied).
On SQLite nothing is taken: every write transaction begins IMMEDIATE (ledger/db.py), which
already runs writers one at a time.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, text

from retention.errors import SweeperBusyError

# the PostgreSQL advisory lock key of the policies lock (ledger/db.py's MIGRATION_LOCK is
# another key: "retent"; this one reads "retpol")
POLICY_LOCK = 0x7265_7470_6F6C


def policies_changing(conn: Connection) -> None:
    """Take the policies lock exclusively until this transaction ends (PostgreSQL; SQLite's
    IMMEDIATE transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POLICY_LOCK})


def policies_steady(conn: Connection) -> None:
    """Take the policies lock shared until this transaction ends: no hold is placed or lifted,
    nor policies applied, until it commits (PostgreSQL; nothing to do on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": POLICY_LOCK})


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
