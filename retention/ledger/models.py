"""SQLAlchemy 2 tables of the ledger. Alembic migrations in `migrations/` create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from retention.core.times import format_time

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store UTC without zone."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the ledger")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Attach UTC to what the database returns."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, write SQLAlchemy's own text form in one step (hot in bulk writes)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """On SQLite, parse the text form straight into an aware datetime."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_datetime


def _sqlite_text(value: datetime | None) -> str | None:
    """`YYYY-MM-DD HH:MM:SS.ffffff` of a UTC datetime, as SQLAlchemy's SQLite DateTime writes."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the ledger")
        value = value.astimezone(UTC)
    return _sqlite_utc_text(value)


def _sqlite_utc_text(value: datetime) -> str:
    """The text of a UTC datetime, cut from its memoised audit-trail form (a bulk write
    formats the same times for both)."""
    text = format_time(value)
    assert text is not None
    return f"{text[:10]} {text[11:-1]}"  # 2026-11-25T08:00:00.000000Z -> 2026-11-25 08:00:00.000000


def _sqlite_datetime(value: str | None) -> datetime | None:
    """An aware UTC datetime from the text form (a stored value carries no zone)."""
    return None if value is None else datetime.fromisoformat(value + "+00:00")


class MetaJSON(TypeDecorator[dict[str, str]]):
    """JSON object of string metadata; the common empty object skips the JSON parser."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        """Encode as JSON does, except the empty object, which most records hold."""
        encode = super().bind_processor(dialect)
        if encode is None or dialect.name != "sqlite":  # psycopg wants its own Json wrapper
            return encode

        def process(value: Any) -> Any:
            return "{}" if value == {} else encode(value)

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        """Decode as JSON does, except `{}`, which most records hold."""
        decode = super().result_processor(dialect, coltype)
        if decode is None:
            return None

        def process(value: Any) -> Any:
            return {} if value == "{}" else decode(value)

        return process


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)


class Record(Base):
    """One stored response: what we know of it, its policy and deadline, and its state."""

    __tablename__ = "records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    response_id: Mapped[str] = mapped_column(String(200))
    account: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model: Mapped[str | None] = mapped_column(String(256))
    meta: Mapped[dict[str, str]] = mapped_column(MetaJSON, default=dict)
    previous_response_id: Mapped[str | None] = mapped_column(String(200))
    chain_root: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(128))
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline_basis: Mapped[str] = mapped_column(String(16))
    hold: Mapped[str | None] = mapped_column(String(128))
    # when the record may next be attempted; set only while pending, so the partial index
    # below holds only the pending work and finding what is due never scans the rest
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the erasure request that last made this record due (its outcome events name it)
    erasure_id: Mapped[str | None] = mapped_column(String(40))
    # what the ID names (core/vocabulary.py ObjectKind): a response, or a conversation
    object: Mapped[str] = mapped_column(String(32), server_default="response")
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # a conversation's
    items_deleted: Mapped[int | None] = mapped_column(Integer)  # a conversation's, so far

    __table_args__ = (
        UniqueConstraint("provider", "response_id"),
        CheckConstraint("due_at IS NULL OR state = 'pending'", name="due_only_when_pending"),
        Index(
            "ix_records_object_state",
            "object",
            "state",
            sqlite_where=text("object != 'response'"),
            postgresql_where=text("object != 'response'"),
        ),
        Index(
            "ix_records_due",
            "due_at",
            sqlite_where=text("due_at IS NOT NULL"),
            postgresql_where=text("due_at IS NOT NULL"),
        ),
        Index(
            "ix_records_provider_due",
            "provider",
            "due_at",
            sqlite_where=text("due_at IS NOT NULL"),
            postgresql_where=text("due_at IS NOT NULL"),
        ),
        Index("ix_records_response_id", "response_id"),
        Index("ix_records_state", "state"),
        Index(
            "ix_records_closed_at",
            "closed_at",
            sqlite_where=text("closed_at IS NOT NULL"),
            postgresql_where=text("closed_at IS NOT NULL"),
        ),
        Index("ix_records_provider_chain_root", "provider", "chain_root"),
        Index(
            "ix_records_pending_deadline",
            "deadline",
            sqlite_where=text("due_at IS NOT NULL"),
            postgresql_where=text("due_at IS NOT NULL"),
        ),
    )


class RecordCount(Base):
    """Records per provider and state, kept by database triggers (migration 0005), so that
    `status` and the metrics read a few rows instead of counting the ledger."""

    __tablename__ = "record_counts"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class RecordSubject(Base):
    """The data subjects of a record: the HMAC of each `KEY=VALUE` pair of its metadata whose
    key is one of `erasure.subject_keys` (core/subjects.py), never the value. Looked up by
    subject first: an erasure finds a person's records through this index, not a scan."""

    __tablename__ = "record_subjects"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(200), primary_key=True)


class Erasure(Base):
    """One data subject's erasure request: when, why, until when, and where it stands."""

    __tablename__ = "erasures"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subjects: Mapped[str] = mapped_column(Text)  # JSON list of the subject digests
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_by: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_erasures_state", "state"),)


class ErasureItem(Base):
    """A record an erasure request covers, as found when it was made; `withheld` names the
    hold that kept it."""

    __tablename__ = "erasure_items"

    erasure_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    record_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    withheld: Mapped[str | None] = mapped_column(String(128))


class AuditEvent(Base):
    """One sealed audit record: `line` is its exact JSON, `hash` covers it."""

    __tablename__ = "audit_events"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    event: Mapped[str] = mapped_column(String(64))
    response_id: Mapped[str | None] = mapped_column(String(200))
    line: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_events_response_id", "response_id"),
        Index("ix_audit_events_ts", "ts"),
    )


class AuditChain(Base):
    """The head of each audit chain, so appending never scans the trail."""

    __tablename__ = "audit_chains"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    # JSON list of the hex roots of the chain's perfect Merkle subtrees (audit/merkle.py);
    # NULL until the first append after migration 0007 computes it from the chain once
    head_frontier: Mapped[str | None] = mapped_column(Text, nullable=True)


class Meta(Base):
    """Small facts about the ledger: the digest of the policies applied, the last sweep."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LegalHold(Base):
    """A legal hold placed with `retention hold add` or `POST /v1/holds` (migration 0009):
    what it holds, why, by whom and until when; lifted ones stay, so a name is used once."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    ids: Mapped[str] = mapped_column(Text)  # JSON list of response IDs
    match: Mapped[str | None] = mapped_column(Text)  # JSON object, as a policies file's match
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_reason: Mapped[str | None] = mapped_column(Text)
    lifted_by: Mapped[str | None] = mapped_column(String(200))


# the tables as SQLAlchemy Core sees them, for statements that skip the ORM on hot paths
RECORDS = cast(Table, Record.__table__)
AUDIT_EVENTS = cast(Table, AuditEvent.__table__)
RECORD_SUBJECTS = cast(Table, RecordSubject.__table__)
ERASURE_ITEMS = cast(Table, ErasureItem.__table__)
HOLDS = cast(Table, LegalHold.__table__)
