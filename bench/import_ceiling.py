"""How fast the ledger itself can take imported rows: the ceiling under `retention import`.

    python bench/import_ceiling.py [--ids 200000] [--json import-ceiling.json]

Imports N IDs with `retention import` (timed, process start included), then writes the very
rows and audit lines it produced into a fresh ledger of the same schema with bare `sqlite3`:
no parsing, no policies, no hashing, no Python per row beyond the driver, in one transaction
of 5,000-row `executemany` calls, records then their events, chunk by chunk, as the import
does. It does so as the schema is, then
without the insert-counting trigger, then without the audit rows, then without either: what
each part of what the ledger keeps per ID costs. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import prepare, report, timed

CHUNK = 5_000


def emptied(source: Path, target: Path) -> None:
    """A copy of the ledger at `source` with its schema and no rows."""
    shutil.copyfile(source, target)
    with sqlite3.connect(target) as db:
        for table in ("records", "audit_events", "audit_chains", "record_counts"):
            db.execute(f"DELETE FROM {table}")
    with sqlite3.connect(target) as db:
        db.execute("VACUUM")


def rows(ledger: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of `table`."""
    with sqlite3.connect(ledger) as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()


def bare_insert(empty: Path, tables: dict[str, list[tuple[Any, ...]]], trigger: bool) -> float:
    """Seconds to insert `tables` into a copy of `empty`, as the import writes (WAL, FULL)."""
    with tempfile.TemporaryDirectory(prefix="retention-ceiling-") as scratch:
        path = Path(scratch) / "ledger.db"
        shutil.copyfile(empty, path)
        db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "temp_store=MEMORY"):
            db.execute(f"PRAGMA {pragma}")
        if not trigger:
            db.execute("DROP TRIGGER records_count_insert")
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        for start in range(0, max(map(len, tables.values())), CHUNK):  # chunk by chunk
            for table, values in tables.items():
                insert = f"INSERT INTO {table} VALUES ({','.join('?' * len(values[0]))})"
                db.executemany(insert, values[start : start + CHUNK])
        db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements."""
    with tempfile.TemporaryDirectory(prefix="retention-bench-ceiling-") as scratch:
        workdir = Path(scratch)
        prepare(workdir, "http://127.0.0.1:9/v1", args.ids)  # nothing is sent
        import_s, _ = timed(workdir, "import", "ids.jsonl")
        ledger, empty = workdir / "retention.db", workdir / "empty.db"
        records, events = rows(ledger, "records"), rows(ledger, "audit_events")
        emptied(ledger, empty)
        n = len(records)
        figures: dict[str, Any] = {"ids": n, "retention_import_ids_per_s": round(n / import_s)}
        for label, tables, trigger in (
            ("bare_sqlite_as_is", {"records": records, "audit_events": events}, True),
            ("bare_sqlite_no_trigger", {"records": records, "audit_events": events}, False),
            ("bare_sqlite_no_audit_rows", {"records": records}, True),
            ("bare_sqlite_neither", {"records": records}, False),
        ):
            figures[f"{label}_ids_per_s"] = round(n / bare_insert(empty, tables, trigger))
    return figures


def main() -> None:
    """Measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200_000, help="IDs imported")
    parser.add_argument("--json", default="import-ceiling.json")
    args = parser.parse_args()
    report(run(args), args.json)


if __name__ == "__main__":
    main()
