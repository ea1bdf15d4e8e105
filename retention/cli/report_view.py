"""The compliance report as a plain or Markdown table, lags as `2d 3h` (JSON keeps seconds)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retention.cli.output import table
from retention.core.durations import format_age

COUNTS = ("deleted", "on_time", "late", "late_on_arrival", "absent", "failed")
LAGS = {"lag_p50": "lag_p50_s", "lag_p99": "lag_p99_s", "lag_max": "lag_max_s"}
COLUMNS = ("group", *COUNTS, *LAGS)


def span(seconds: float | None) -> str | None:
    """Seconds as a rounded human length (`54d 11h`); None stays None."""
    return None if seconds is None else format_age(timedelta(seconds=seconds))


def _row(group: str, figures: dict[str, Any]) -> dict[str, Any]:
    """One table row: the counts, and the lags in human units."""
    return {
        "group": group,
        **{name: figures.get(name, 0) for name in COUNTS},
        **{name: span(figures.get(key)) for name, key in LAGS.items()},
    }


def render_report(data: dict[str, Any], *, markdown: bool) -> str:
    """Header lines and one table of every group."""
    rows = [_row("all", data["total"])]
    rows += [_row(f"policy {k}", v) for k, v in data["by_policy"].items()]
    rows += [_row(f"provider {k}", v) for k, v in data["by_provider"].items()]
    head = (
        f"deletions from {data['since'] or 'the beginning'} to {data['until'] or 'now'}; "
        f"held now {data['held_now']}, overdue now {data['overdue_now']}\n"
        f"on time: within {span(data['on_time_tolerance_s'])} of the deadline; late on "
        "arrival: already past it when first recorded (no sweep could have been on time); "
        "lags count from the deadline, or from the first sighting when that came later"
    )
    if not markdown:
        return head + "\n" + table(rows, COLUMNS)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += [
        "| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) + " |"
        for r in rows
    ]
    paragraphs = head.replace("\n", "\n\n")
    return f"# Retention compliance report\n\n{paragraphs}\n\n" + "\n".join(lines)
