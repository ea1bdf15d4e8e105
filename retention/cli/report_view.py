"""The compliance report as a plain or Markdown table."""

from __future__ import annotations

from typing import Any

from retention.cli.output import table

COLUMNS = (
    "group",
    "deleted",
    "on_time",
    "late",
    "absent",
    "failed",
    "lag_p50_s",
    "lag_p99_s",
    "lag_max_s",
)


def render_report(data: dict[str, Any], *, markdown: bool) -> str:
    """Header lines and one table of every group."""
    rows = [{"group": "all", **data["total"]}]
    rows += [{"group": f"policy {k}", **v} for k, v in data["by_policy"].items()]
    rows += [{"group": f"provider {k}", **v} for k, v in data["by_provider"].items()]
    head = (
        f"deletions from {data['since'] or 'the beginning'} to {data['until'] or 'now'}; "
        f"on time = within {data['on_time_tolerance_s']}s of the deadline; "
        f"held now {data['held_now']}, overdue now {data['overdue_now']}"
    )
    if not markdown:
        return head + "\n" + table(rows, COLUMNS)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += [
        "| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in COLUMNS) + " |"
        for r in rows
    ]
    return f"# Retention compliance report\n\n{head}\n\n" + "\n".join(lines)
