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


LOGGED_STEPS = 10  # a command's progress off a terminal: a line per tenth of the work


@contextmanager
def progress(total: int, label: str, unit: str = "records") -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; otherwise a `progress` line at info
    for each tenth of the work done (and one at the end), so a cron job's or a pod's log says
    how far a long command got in a dozen lines, whatever its size."""
    if total <= 0:
        yield lambda n: None
        return
    if not sys.stderr.isatty():
        step = _LoggedProgress(total, label, unit)
        yield step.advance
        step.finish()
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


class _LoggedProgress:
    """Progress as log lines: one each time another tenth of `total` is done."""

    def __init__(self, total: int, label: str, unit: str) -> None:
        from retention.logs import get_logger

        self.total, self.label, self.unit = total, label, unit
        self.done = self.logged = 0
        self._log = get_logger("retention.progress")

    def advance(self, n: int) -> None:
        """`n` more done; a line when that crosses the next tenth."""
        self.done += n
        if self.done * LOGGED_STEPS // self.total > self.logged * LOGGED_STEPS // self.total:
            self._line()

    def finish(self) -> None:
        """The last line, unless the last step already said it all."""
        if self.done != self.logged:
            self._line()

    def _line(self) -> None:
        """Log how far the work got."""
        self.logged = self.done
        self._log.info(
            "progress", task=self.label, done=self.done, total=self.total, unit=self.unit
        )
