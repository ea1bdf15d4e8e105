"""Insert or update many rows without SQLAlchemy's per-row parameter handling.

An executemany through SQLAlchemy builds and type-processes a parameter dict per row, which
costs more than SQLite's own insert. Here the statement is compiled once per dialect, each
column's bind processor is looked up once, and the processed tuples go straight to the DBAPI
cursor through `exec_driver_sql`, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

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
    compiled: tuple[str, tuple[Processor, ...], bool],
    columns: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Process each row's values with its columns' bind processors, and execute."""
    if not rows:
        return
    sql, processors, named = compiled
    todo = [(i, p) for i, p in enumerate(processors) if p is not None]
    params: list[Any] = []
    for row in rows:
        if todo:
            row = list(row)
            for i, process in todo:
                row[i] = process(row[i])
        params.append(dict(zip(columns, row, strict=True)) if named else tuple(row))
    conn.exec_driver_sql(sql, params)


@lru_cache(maxsize=64)  # per dialect instance: a few per process
def _compiled(
    dialect: Dialect, table: Table, columns: tuple[str, ...], key: str | None
) -> tuple[str, tuple[Processor, ...], bool]:
    """The statement's SQL for `dialect` (an INSERT, or an UPDATE by `key`), the bind processor
    of each parameter, and whether the driver takes named parameters. Only the columns given
    are set: no defaults are added."""
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
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in (*columns, *([key] if key else []))
    )
    return sql, processors, "{}" in mark
