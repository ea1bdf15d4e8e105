"""The ledger's unit of work: state changes and their audit events commit together.

Every call blocks (SQLite may wait 30 s for its write lock): async code makes them through
`loopguard.off_loop`, and each one checks that it is not on the event loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from retention.core.times import format_time, utcnow
from retention.core.vocabulary import Event
from retention.errors import LedgerError
from retention.ledger import audit_writer, loopguard
from retention.ledger.audit_file import AuditSink, Sealed
from retention.ledger.diagnosis import describe
from retention.ledger.publisher import Publisher


@dataclass
class Tx:
    """One write transaction: run statements on `conn`, queue events with `event()`."""

    conn: Connection
    now: datetime
    actor: dict[str, Any]
    chain: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    sealed: Sealed | None = None

    def event(self, name: Event, **fields: Any) -> None:
        """Queue an audit event (its name from the vocabulary, nothing else); it is sealed and
        inserted by `flush()` or at commit."""
        fields["deadline"] = format_time(fields.get("deadline"))
        self.bodies.append({"event": str(name), "ts": self.ts, "actor": self.actor, **fields})

    def record_event(self, name: Event, row: Any, **fields: Any) -> None:
        """Queue an audit event about one records row: its response ID, provider, account,
        policy and deadline from the row, unless `fields` gives the new policy or deadline."""
        fields.setdefault("policy", row.policy)
        fields.setdefault("deadline", row.deadline)
        self.event(
            name, response_id=row.response_id, provider=row.provider, account=row.account, **fields
        )

    def flush(self) -> None:
        """Seal and insert the queued events now, so a long transaction holds only the
        latest batch of them in memory (the rest are read back from the ledger to publish)."""
        records = audit_writer.append(self.conn, self.chain, self.bodies, self.now)
        self.bodies.clear()
        if not records:
            return
        if self.sealed is None:
            self.sealed = Sealed(self.chain, records[0][0]["seq"])
        self.sealed.add(records)

    @cached_property
    def ts(self) -> str:
        """`now` as the audit trail writes it (every event of the transaction carries it)."""
        return format_time(self.now) or ""


class Ledger:
    """The database plus the audit trail, written only through `write()`."""

    def __init__(
        self, engine: Engine, sink: AuditSink, *, chain: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.engine, self.sink, self.chain, self.clock = engine, sink, chain, clock
        self.actor = audit_writer.actor()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection that does not take SQLite's write lock."""
        loopguard.check("read")
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(sqlite_begin="DEFERRED")
                yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(describe(exc, self.engine.url, "read failed")) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction with no audit events (leases and bookkeeping only)."""
        loopguard.check("transaction")
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise LedgerError(describe(exc, self.engine.url, "write failed")) from exc

    @contextmanager
    def write(self, chain: str | None = None, *, publish_later: bool = False) -> Iterator[Tx]:
        """A write transaction; its events are chained in it (on this writer's chain, or on
        `chain`) and published after commit: the audit file is opened first (an unwritable one
        fails before anything is committed), and locked only to append. With `publish_later`
        the publisher thread publishes them, and the caller goes on once they are committed
        (ingest's group commit: one disk flush in each request's wait, not two)."""
        loopguard.check("write")
        with self.sink.opened() as fd:
            try:
                with self.engine.begin() as conn:
                    tx = Tx(
                        conn=conn, now=self.clock(), actor=self.actor, chain=chain or self.chain
                    )
                    yield tx
                    tx.flush()
            except SQLAlchemyError as exc:
                raise LedgerError(describe(exc, self.engine.url, "write failed")) from exc
            if tx.sealed is not None:
                if publish_later:
                    self.publisher.put(tx.sealed)
                else:
                    self.sink.publish(fd, tx.sealed, self._backfill)

    @cached_property
    def publisher(self) -> Publisher:
        """The thread publishing `publish_later` transactions (started on first use)."""
        return Publisher(self.sink, self._backfill)

    def published(self) -> None:
        """Wait until every `publish_later` transaction committed so far is published."""
        if "publisher" in self.__dict__:
            self.publisher.drain()

    def _backfill(self, chain: str, first: int, last: int) -> list[str]:
        """Committed lines from `first` to `last` (the caller pages through long ranges)."""
        with self.read() as conn:
            return audit_writer.lines_between(conn, chain, first, last)

    def close(self) -> None:
        """Publish what waits, and release the database connections."""
        if "publisher" in self.__dict__:
            self.publisher.close()
        self.engine.dispose()
