"""Insert or update many rows without SQLAlchemy's per-row parameter handling.

An executemany through SQLAlchemy builds and type-processes a parameter dict per row, which
costs more than SQLite's own insert. Here the statement is compiled once per dialect, each
column's bind processor is looked up once, and the processed tuples go straight to the DBAPI
cursor through `exec_driver_sql`, inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any] | None


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT `rows` (values in the order of `columns`) into `table`. On SQLite, many rows a
    statement: one step of the database for each, instead of one a row (and one release of
    the interpreter's lock, which another thread takes: group commit shares the process with
    the HTTP server)."""
    compiled = _compiled(conn.dialect, table, columns, None)
    if conn.dialect.paramstyle != "qmark":
        _execute(conn, compiled, columns, rows)
        return
    params = _processed(compiled, columns, rows)
    per = _rows_a_statement(len(columns))
    for start in range(0, len(params), per):
        part = params[start : start + per]
        conn.exec_driver_sql(_many_values(compiled[0], len(part)), tuple(chain.from_iterable(part)))


def update_many(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    key: str,
    rows: Sequence[Sequence[Any]],
) -> None:
    """UPDATE `table` SET `columns` WHERE `key` = the last value of each row."""
    _execute(conn, _compiled(conn.dialect, table, columns, key), (*columns, key), rows)


def _execute(
    conn: Connection,
    compiled: tuple[str, tuple[Processor, ...], bool, frozenset[int]],
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Process each row's values with its columns' bind processors, and execute."""
    if rows:
        conn.exec_driver_sql(compiled[0], _processed(compiled, columns, rows))


def _processed(
    compiled: tuple[str, tuple[Processor, ...], bool, frozenset[int]],
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> list[Any]:
    """Each row's values through its columns' bind processors, as the driver takes them. A
    time column's values repeat (a transaction's rows share its time), so each distinct one
    is processed once per call."""
    _, processors, named, times = compiled
    todo = [
        (i, _once_each(p) if i in times else p) for i, p in enumerate(processors) if p is not None
    ]
    params: list[Any] = []
    for row in rows:
        if todo:
            row = list(row)
            for i, process in todo:
                row[i] = process(row[i])
        params.append(dict(zip(columns, row, strict=True)) if named else tuple(row))
    return params


def _rows_a_statement(columns: int) -> int:
    """How many rows one SQLite INSERT takes: at most 500, and no more parameters than the
    library allows (999 before SQLite 3.32)."""
    limit = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    return max(1, min(500, limit // columns))


@lru_cache(maxsize=256)
def _many_values(sql: str, rows: int) -> str:
    """A one-row `INSERT ... VALUES (?, ...)` made to take `rows` rows."""
    head, marks = sql.split(" VALUES ")
    return f"{head} VALUES {', '.join([marks] * rows)}"


def _once_each(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`process`, remembering what it made of each value (for one call's rows)."""
    made: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        try:
            return made[value]
        except KeyError:
            made[value] = result = process(value)
            return result

    return remembered


@lru_cache(maxsize=64)  # per dialect instance: a few per process
def _compiled(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: str | None
) -> tuple[str, tuple[Processor, ...], bool, frozenset[int]]:
    """The statement's SQL for `dialect` (an INSERT, or an UPDATE by `key`), the bind processor
    of each parameter, whether the driver takes named parameters, and which parameters are
    times. Only the columns given are set: no defaults are added."""
    quote = dialect.identifier_preparer.quote
    marks = {"qmark": "?", "format": "%s", "pyformat": "%({})s", "named": ":{}"}
    mark = marks.get(dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(f"bulk statements: paramstyle {dialect.paramstyle}")
    if key is None:
        sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote(table.name),
            ", ".join(quote(name) for name in columns),
            ", ".join(mark.format(name) for name in columns),
        )
    else:
        sql = "UPDATE {} SET {} WHERE {} = {}".format(
            quote(table.name),
            ", ".join(f"{quote(name)} = {mark.format(name)}" for name in columns),
            quote(key),
            mark.format(key),
        )
    names = (*columns, *([key] if key else []))
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    times = frozenset(i for i, name in enumerate(names) if _is_time(table.c[name].type))
    return sql, processors, "{}" in mark, times


def _is_time(kind: TypeEngine[Any]) -> bool:
    """Whether a column holds datetimes (a decorated type: whether its own type does)."""
    try:
        return getattr(kind, "impl_instance", kind).python_type is datetime
    except NotImplementedError:  # a type that does not say
        return False
