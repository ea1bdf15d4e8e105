"""Index records by data subject, and never keep a subject's value.

New records are indexed as they are recorded (`index_rows`, called by services/recording.py):
their stored metadata has each subject value replaced by its digest, and `record_subjects`
gets one row per digest. Records already in the ledger when subjects were introduced
(migration 0008) are indexed by `backfill`, a batch at a time, resumable: the ledger remembers
how far it got (`MetaKey.SUBJECTS_BACKFILL_AFTER`) and up to which record id it must go.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, select

from retention.config.settings import Settings
from retention.core.subjects import PSEUDONYM, pseudonymised
from retention.core.vocabulary import MetaKey
from retention.ledger import bulk, queries
from retention.ledger.ledger import Ledger
from retention.ledger.models import RECORD_SUBJECTS, RECORDS
from retention.logs import get_logger

log = get_logger("retention.ledger")

SUBJECT_COLUMNS = ("subject", "provider", "response_id")
BATCH = 2_000


def index_rows(conn: Connection, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
    """Index the subjects of new records rows, whose metadata already holds digests in place
    of subject values (services/recording.py); the caller inserts the rows in the same
    transaction."""
    found = [
        (value[len(PSEUDONYM) :], row["provider"], row["response_id"])
        for row in rows
        if row["meta"]
        for name in keys
        if (value := row["meta"].get(name, "")).startswith(PSEUDONYM)
    ]
    bulk.insert_many(conn, RECORD_SUBJECTS, SUBJECT_COLUMNS, found)


def backfill_left(conn: Connection) -> int:
    """How many record ids the backfill has still to pass (0 when done)."""
    after = int(queries.get_meta(conn, MetaKey.SUBJECTS_BACKFILL_AFTER) or 0)
    until = int(queries.get_meta(conn, MetaKey.SUBJECTS_BACKFILL_UNTIL) or 0)
    return max(0, until - after)


def backfill(ledger: Ledger, settings: Settings, key: bytes, *, batches: int | None = None) -> int:
    """Index the records recorded before subjects were, `BATCH` at a time, each batch its own
    transaction (no audit event: the records' facts do not change, only how they are kept).
    Stops after `batches` batches when given; returns how many ids are left."""
    keys = settings.erasure.subject_keys
    done = 0
    while batches is None or done < batches:
        with ledger.transaction() as conn:
            after = int(queries.get_meta(conn, MetaKey.SUBJECTS_BACKFILL_AFTER) or 0)
            until = int(queries.get_meta(conn, MetaKey.SUBJECTS_BACKFILL_UNTIL) or 0)
            if after >= until:
                return 0
            if conn.dialect.name == "sqlite":  # the raw values rewritten are zeroed on disk
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            c = RECORDS.c
            rows = conn.execute(
                select(c.id, c.provider, c.response_id, c.meta)
                .where(c.id > after, c.id <= until)
                .order_by(c.id)
                .limit(BATCH)
            ).all()
            last = rows[-1].id if rows else until
            found = []
            for row in rows:
                if not row.meta:
                    continue
                stored, digests = pseudonymised(row.meta, key, keys)
                if stored != row.meta:
                    queries.update_record(conn, row.id, meta=stored)
                found += [(d, row.provider, row.response_id) for d in digests]
            known = _known(conn, found)
            bulk.insert_many(
                conn, RECORD_SUBJECTS, SUBJECT_COLUMNS, [f for f in found if f not in known]
            )
            queries.set_meta(conn, MetaKey.SUBJECTS_BACKFILL_AFTER, str(last))
        done += 1
        if after_batch_left(ledger) == 0:
            _drop_old_pages(ledger)
            return 0
    with ledger.read() as conn:
        return backfill_left(conn)


def after_batch_left(ledger: Ledger) -> int:
    """What the backfill has still to pass, read afresh."""
    with ledger.read() as conn:
        return backfill_left(conn)


def _drop_old_pages(ledger: Ledger) -> None:
    """Once every raw value is rewritten, let SQLite's write-ahead log forget the pages that
    held them (PostgreSQL's VACUUM reclaims its old row versions in time on its own)."""
    if ledger.engine.dialect.name != "sqlite":
        return
    raw = ledger.engine.raw_connection()  # outside any transaction, as a checkpoint must be
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    except sqlite3.Error as exc:  # best effort: a busy reader leaves it to SQLite's own
        log.info("subjects.checkpoint_deferred", error=str(exc))
    finally:
        raw.close()


def _known(conn: Connection, found: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which of these index rows exist already (a batch written again after a crash)."""
    if not found:
        return set()
    c = RECORD_SUBJECTS.c
    rows = conn.execute(
        select(c.subject, c.provider, c.response_id).where(c.subject.in_({f[0] for f in found}))
    ).all()
    return {(r.subject, r.provider, r.response_id) for r in rows}
