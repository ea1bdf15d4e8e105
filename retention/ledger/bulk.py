"""Insert many rows without SQLAlchemy's per-row parameter handling.

An executemany through SQLAlchemy builds and type-processes a parameter dict per row, which
costs more than SQLite's own insert. Here the statement is compiled once per dialect, each
column's bind processor is looked up once, and the processed tuples go straight to the DBAPI
cursor through `exec_driver_sql`, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


def insert_many(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT `rows` (values in the order of `columns`) into `table`."""
    if not rows:
        return
    sql, processors, named = _compiled(conn.dialect, table, columns)
    todo = [(i, p) for i, p in enumerate(processors) if p is not None]
    params: list[Any] = []
    for row in rows:
        if todo:
            row = list(row)
            for i, process in todo:
                row[i] = process(row[i])
        params.append(dict(zip(columns, row, strict=True)) if named else tuple(row))
    conn.exec_driver_sql(sql, params)


@cache
def _compiled(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[str, tuple[Processor, ...], bool]:
    """The statement's SQL for `dialect`, the bind processor of each column, and whether the
    driver takes named parameters (only the columns given are set: no defaults are added)."""
    quote = dialect.identifier_preparer.quote
    marks = {"qmark": "?", "format": "%s", "pyformat": "%({})s", "named": ":{}"}
    mark = marks.get(dialect.paramstyle)
    if mark is None:
        raise NotImplementedError(f"bulk insert: paramstyle {dialect.paramstyle}")
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(table.name),
        ", ".join(quote(name) for name in columns),
        ", ".join(mark.format(name) for name in columns),
    )
    processors = tuple(
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    )
    return sql, processors, "{}" in mark
