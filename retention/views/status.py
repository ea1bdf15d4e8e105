"""`retention status`: counts by state, what is due, the next deadline, discovery coverage."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import URL

from retention.core.times import format_time
from retention.core.vocabulary import STATES, MetaKey
from retention.ledger import queries
from retention.ledger.diagnosis import where
from retention.ledger.ledger import Ledger
from retention.ledger.models import Meta


def status_of(ledger: Ledger, now: datetime) -> dict[str, Any]:
    """The ledger read, counts by state, what is due and overdue, the next deadline and the
    last sweep."""
    with ledger.read() as conn:
        counts = queries.counts_by_state(conn)
        last = queries.get_meta(conn, MetaKey.LAST_SWEEP)
        return {
            "ledger": ledger_name(ledger.engine.url),
            "states": {state: counts.get(state, 0) for state in STATES},
            "total": sum(counts.values()),
            # conversations (and any other object than responses), by state: among the above
            "objects": {
                kind: {state: by_state.get(state, 0) for state in STATES}
                for kind, by_state in queries.counts_of_objects(conn).items()
            },
            "due_now": queries.count_due(conn, now),
            "overdue": queries.overdue_count(conn, now),
            "next_deadline": format_time(queries.next_deadline(conn, now)),
            "last_sweep": json.loads(last) if last else None,
            "coverage": _coverage(conn),
        }


def ledger_name(url: URL) -> str:
    """The ledger as `status` names it: `sqlite:///PATH`, or the URL without its password,
    query or driver (`postgresql://user:***@host/db`)."""
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{url.database}"
    return where(url)


def _coverage(conn: Connection) -> dict[str, Any]:
    """Per provider: records tracked, and what discovery has read of the provider's listing."""
    tracked = queries.counts_by_provider(conn)
    rows = conn.execute(
        select(Meta.key, Meta.value).where(Meta.key.like(MetaKey.DISCOVER + "%"))
    ).all()
    crawls = {key.split(":", 1)[1]: json.loads(value) for key, value in rows}
    return {
        name: {
            "tracked": tracked.get(name, 0),
            "listed_seen": crawls.get(name, {}).get("listed_total"),
            "enrolled_by_discovery": crawls.get(name, {}).get("discovered_total"),
            "last_complete_crawl": crawls.get(name, {}).get("last_complete"),
            "crawl_in_progress": bool(crawls.get(name, {}).get("after")),
        }
        for name in sorted(set(tracked) | set(crawls))
    }
