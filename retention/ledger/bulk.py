"""Insert or update many rows without SQLAlchemy's per-row parameter handling.

An executemany through SQLAlchemy builds and type-processes a parameter dict per row, which
costs more than SQLite's own insert. Here the statement is compiled once per dialect, each
column's bind processor is looked up once, and the processed tuples go straight to the DBAPI
cursor through `exec_driver_sql`, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any] | None


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT `rows` (values in the order of `columns`) into `table`."""
    _execute(conn, _compiled(conn.dialect, table, columns, None), columns, rows)


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
    """Process each row's values with its columns' bind processors, and execute. A time
    column's values repeat (a transaction's rows share its time), so each distinct one is
    processed once per call."""
    if not rows:
        return
    sql, processors, named, times = compiled
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
    conn.exec_driver_sql(sql, params)


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
