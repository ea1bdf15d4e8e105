"""Open the ledger database: engine settings per backend, migrations, schema checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from retention.errors import ConfigError, LedgerError, SchemaOutdatedError
from retention.files import make_private, make_private_if_present
from retention.ledger.diagnosis import describe, where

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration in migrations/versions (a test keeps the two equal). Knowing it here
# lets every command check the schema without importing Alembic.
HEAD_REVISION = "0010"
# the PostgreSQL advisory lock `upgrade` holds: one migration at a time per database
MIGRATION_LOCK = 0x7265_7465_6E74  # "retent"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file
# files beside a SQLite ledger, made private with it: SQLite's own, and our sweeper lock
COMPANIONS = ("-wal", "-shm", "-journal", ".lock")


def migrations_dir() -> Path:
    """Where the Alembic scripts are: inside the wheel, or `migrations/` in a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def is_sqlite(engine: Engine) -> bool:
    """Whether `engine` is the embedded SQLite ledger."""
    return engine.dialect.name == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The file behind a sqlite:/// URL (URL escapes such as %25 decoded)."""
    if not url.startswith("sqlite:///"):
        return None
    database = make_url(url).database
    return Path(database) if database else None


def make_engine(url: str) -> Engine:
    """An engine for `url`; a new SQLite file is created 0600 first, and one found open to
    group or others is made 0600 with a warning, and so are its -wal, -shm and -journal (SQLite
    copies their mode from it) and its sweeper lock."""
    path = sqlite_path(url)
    if path is None:
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if not path.parent.is_dir():
        raise LedgerError(
            f"ledger {path}: the folder {path.parent} does not exist; create it or fix database_url"
        )
    if path.exists() and not path.is_file():  # a folder, a named pipe, a device
        raise ConfigError(
            f"ledger {path} is not a regular file; point database_url at a SQLite file",
            key="database_url",
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise LedgerError(describe(exc, url)) from None
    try:
        ours = os.pread(fd, len(SQLITE_HEADER), 0) in (b"", SQLITE_HEADER)  # never another file
        if ours:
            make_private(fd, path)
    except OSError as exc:
        raise LedgerError(describe(exc, url)) from None
    finally:
        os.close(fd)
    for suffix in COMPANIONS if ours else ():
        make_private_if_present(f"{path}{suffix}")
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL for concurrent readers, FULL sync so a recorded ID survives power loss."""
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    # statement journals (one per row that fires a counting trigger) stay off the disk: a
    # trigger-counted insert cost three times an uncounted one with them on disk
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    """Writers take the write lock at BEGIN, so reading a chain head and appending is atomic."""
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def alembic_config(engine: Engine) -> Config:
    """An Alembic config pointing at our scripts, with no ini file."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # ConfigParser reads % as interpolation: double it, so a URL-escaped password or a path
    # with % neither crashes nor ends up quoted in a traceback
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied."""
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config(engine)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE serialises it
                # two pods (or a Job and a pod) upgrading at once: the second waits here, then
                # finds the schema current and does nothing; released at commit
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise LedgerError(describe(exc, engine.url, "migration failed")) from exc
    except CommandError as exc:  # a revision we do not know: a newer release wrote the ledger
        raise LedgerError(
            f"ledger {where(engine.url)}: migration failed: {exc}; was it upgraded by a newer "
            "release of retention?"
        ) from None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when empty); LedgerError, naming the ledger
    and what to do, when it cannot be opened."""
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="DEFERRED")  # a reader: no write lock
            if not engine.dialect.has_table(conn, "alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except SQLAlchemyError as exc:
        raise LedgerError(describe(exc, engine.url)) from None


def head_revision(engine: Engine) -> str | None:
    """The newest revision among the migration scripts (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdatedError unless the schema is at this release's head."""
    current = current_revision(engine)
    if current != HEAD_REVISION:
        raise SchemaOutdatedError(
            f"ledger {where(engine.url)}: the schema is at {current or 'nothing'}, this "
            f"release needs {HEAD_REVISION}; run `retention db upgrade`"
        )


def open_engine(url: str, *, auto_upgrade: bool | None = None) -> Engine:
    """Open the ledger; SQLite is upgraded automatically, PostgreSQL must be upgraded first."""
    engine = make_engine(url)
    upgrade_now = auto_upgrade if auto_upgrade is not None else is_sqlite(engine)
    if upgrade_now and current_revision(engine) != HEAD_REVISION:
        upgrade(engine)
    require_current(engine)
    return engine
