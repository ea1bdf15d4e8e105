"""Render rows as an aligned table or as JSON, and progress only on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

OUTPUT = click.option(
    "--output",
    "-o",
    "output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def emit(
    data: Any,
    output: str,
    *,
    columns: Sequence[str] | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> None:
    """Print `data` as JSON, or `rows` as a table with `columns`."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
        return
    if rows is not None and columns is not None:
        click.echo(table(rows, columns))


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """An aligned plain-text table."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    """One table cell."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    return str(value)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; otherwise nothing is drawn."""
    if not sys.stderr.isatty() or total <= 0:
        yield lambda n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update
