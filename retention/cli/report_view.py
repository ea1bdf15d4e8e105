"""The compliance report as plain or Markdown tables (deletions, then erasure requests), lags
and times to completion as `2d 3h` (JSON keeps seconds)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from retention.cli.output import table
from retention.core.durations import format_age

COUNTS = ("deleted", "on_time", "late", "late_on_arrival", "absent", "failed")
LAGS = {"lag_p50": "lag_p50_s", "lag_p99": "lag_p99_s", "lag_max": "lag_max_s"}
COLUMNS = ("group", *COUNTS, *LAGS)
ERASURE_COUNTS = ("requested", "completed", "open", "overdue")
ERASURE_SPANS = {
    "completion_p50": "completion_p50_s",
    "completion_p99": "completion_p99_s",
    "completion_max": "completion_max_s",
}
ERASURE_COLUMNS = (*ERASURE_COUNTS, *ERASURE_SPANS)


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


def _erasure_row(figures: dict[str, Any]) -> dict[str, Any]:
    """The erasure table's one row: counts, and times to completion in human units."""
    return {
        **{name: figures.get(name, 0) for name in ERASURE_COUNTS},
        **{name: span(figures.get(key)) for name, key in ERASURE_SPANS.items()},
    }


def _markdown(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """A Markdown table; `-` for a missing value."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += [
        "| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in columns) + " |"
        for r in rows
    ]
    return "\n".join(lines)


def render_report(data: dict[str, Any], *, markdown: bool) -> str:
    """Header lines and one table of every group, then the erasure requests."""
    rows = [_row("all", data["total"])]
    rows += [_row(f"policy {k}", v) for k, v in data["by_policy"].items()]
    rows += [_row(f"provider {k}", v) for k, v in data["by_provider"].items()]
    rows += [_row(f"object {k}", v) for k, v in data.get("by_object", {}).items()]
    head = (
        f"deletions from {data['since'] or 'the beginning'} to {data['until'] or 'now'}; "
        f"held now {data['held_now']}, overdue now {data['overdue_now']}\n"
        f"on time: within {span(data['on_time_tolerance_s'])} of the deadline; late on "
        "arrival: already past it when first recorded (no sweep could have been on time); "
        "lags count from the deadline, or from the first sighting when that came later"
    )
    erasures = [_erasure_row(data.get("erasures") or {})]
    erasure_head = (
        f"erasure requests made from {data['since'] or 'the beginning'} to "
        f"{data['until'] or 'now'}, as they stand now; overdue: open past their due date, "
        "or completed after it; completion: from the request to its completion"
    )
    if not markdown:
        return "\n".join(
            (head, table(rows, COLUMNS), "", erasure_head, table(erasures, ERASURE_COLUMNS))
        )
    paragraphs = head.replace("\n", "\n\n")
    return (
        f"# Retention compliance report\n\n{paragraphs}\n\n{_markdown(rows, COLUMNS)}\n\n"
        f"## Erasure requests\n\n{erasure_head}\n\n{_markdown(erasures, ERASURE_COLUMNS)}"
    )
