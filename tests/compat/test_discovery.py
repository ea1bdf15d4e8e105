"""Discovery against a real Llama Stack: `retention discover` enrols what its listing shows, a
crawl whose saved cursor was deleted at the server finishes on the next run, and a burst of
more than 100 responses in one second is walked as far as the server's own `after` allows."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.compat.support import (
    PROVIDER,
    LlamaStack,
    burst_responses,
    configure,
    delete_at_server,
    figure,
    make_responses,
    retention,
    rows,
)

pytestmark = pytest.mark.compat
PAGE = 100  # the page discovery asks for (retention/discover.py PAGE_SIZE), Llama Stack's most


def listing_walk(server: LlamaStack) -> list[str]:
    """The IDs Llama Stack's own listing yields to a client paging with `after`, as alice,
    newest first, 100 a page."""
    seen: list[str] = []
    after: str | None = None
    with server.client() as http:
        while True:
            params: dict[str, str | int] = {"limit": PAGE}
            if after is not None:
                params["after"] = after
            page = http.get("/responses", params=params)
            page.raise_for_status()
            body = page.json()
            seen.extend(item["id"] for item in body["data"])
            if not body["has_more"] or not body["data"]:
                return seen
            after = body["last_id"]


def stored_count(server: LlamaStack) -> int:
    """How many of alice's responses Llama Stack's store holds."""
    found = server.sql("SELECT count(*) FROM responses WHERE owner_principal = 'alice'")
    return int(found[0][0])


def discover(workdir: Path) -> dict[str, Any]:
    """`retention discover -o json`: it must exit 0 and complete each listing (responses, and
    the chat completions Llama Stack lists too); its report of the responses', with the chat
    completions' enrolments as `chat_enrolled`."""
    done = retention(workdir, "discover", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    reports = {report.get("object", "response"): report for report in json.loads(done.stdout)}
    for report in reports.values():
        assert report["complete"] is True and report["error"] is None, report
    chat = reports.get("chat.completion", {})
    return {**reports["response"], "chat_enrolled": chat.get("enrolled")}


def chats_stored(server: LlamaStack) -> int:
    """How many of alice's chat completions Llama Stack's store holds (one per response too)."""
    found = server.sql("SELECT count(*) FROM inference_store WHERE owner_principal = 'alice'")
    return int(found[0][0])


def responses_in(workdir: Path) -> dict[str, dict[str, Any]]:
    """The ledger's records of responses (discovery enrols chat completions too), by ID."""
    return {rid: row for rid, row in rows(workdir).items() if row["object"] == "response"}


def crawl_state(workdir: Path) -> dict[str, Any]:
    """The crawl state discovery keeps in the ledger's meta table."""
    with sqlite3.connect(workdir / "retention.db") as conn:
        (value,) = conn.execute(
            "SELECT value FROM meta WHERE key = ?", (f"discover:{PROVIDER}",)
        ).fetchone()
    return dict(json.loads(value))


def test_discover_enrols_the_responses_llama_stack_lists(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """30 new responses: `discover` enrols each of them with its created_at and model, and
    exactly what the server's own listing walk yields; a second run reads one page, enrols
    nothing."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 30, threads=1, tag="listed")
    report = discover(workdir)
    ledger = responses_in(workdir)
    assert {item["id"] for item in made} <= set(ledger)
    assert all(ledger[item["id"]]["created_at"] for item in made)
    assert {ledger[item["id"]]["model"] for item in made} == {made[0]["model"]}
    walked = listing_walk(llamastack)
    assert set(ledger) == set(walked)
    again = discover(workdir)
    assert (again["pages"], again["enrolled"]) == (1, 0), again
    figure(
        "discover",
        created=len(made),
        found_of_created=sum(item["id"] in ledger for item in made),
        enrolled=report["enrolled"],
        listing_walk=len(walked),
        stored_at_server=stored_count(llamastack),
        second_run_pages=again["pages"],
        chats_enrolled=report["chat_enrolled"],
        chats_stored_at_server=chats_stored(llamastack),
    )


def test_a_crawl_whose_cursor_was_deleted_finishes_on_the_next_run(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """250 responses; a crawl left unfinished with its cursor on one of them, which is then
    deleted at Llama Stack (its listing answers 400 to that `after`): the next `discover`
    exits 0, walks again from the top and completes, enrolling what the listing yields."""
    configure(workdir, llamastack.base_url)
    made = make_responses(llamastack, 250, threads=4, tag="stale")
    upgraded = retention(workdir, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    walked = listing_walk(llamastack)
    cursor = walked[min(PAGE, len(walked) - 1)]  # where a crawl stopped after its first page
    newest = max(int(item["created_at"]) for item in made)
    state = {"after": cursor, "top": newest, "high_water": None, "listed_total": PAGE}
    with sqlite3.connect(workdir / "retention.db") as conn:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            (f"discover:{PROVIDER}", json.dumps(state)),
        )
    delete_at_server(llamastack, cursor)
    with llamastack.client() as http:
        refused = http.get("/responses", params={"limit": PAGE, "after": cursor})
    assert refused.status_code == 400, refused.text  # what the crawl meets
    report = discover(workdir)
    after = crawl_state(workdir)
    assert after["after"] is None and after["high_water"] is not None, after
    ledger = responses_in(workdir)
    walked_now = listing_walk(llamastack)
    assert set(ledger) == set(walked_now)
    assert cursor not in ledger
    figure(
        "stale cursor",
        created=len(made),
        pages=report["pages"],
        enrolled=report["enrolled"],
        listing_walk=len(walked_now),
        stored_at_server=stored_count(llamastack),
        found_of_created=sum(item["id"] in ledger for item in made),
    )


def test_a_burst_in_one_second_is_walked_as_far_as_the_listing_allows(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """More than 100 responses made within one second: discovery finishes without error and
    finds exactly what the server's own listing walk yields. Llama Stack's `after` skips the
    responses sharing the cursor's created_at second (a server bug), so the figures show how
    many exist against how many any client can list."""
    configure(workdir, llamastack.base_url)
    made = burst_responses(llamastack, 200)
    seconds = Counter(int(item["created_at"]) for item in made)
    busiest = max(seconds.values())
    assert busiest > PAGE, f"the server made at most {busiest} a second: {sorted(seconds.items())}"
    report = discover(workdir)
    ledger = responses_in(workdir)
    walked = listing_walk(llamastack)
    assert set(ledger) == set(walked)
    stored = stored_count(llamastack)
    figure(
        "burst",
        created=len(made),
        busiest_second=busiest,
        found_of_created=sum(item["id"] in ledger for item in made),
        enrolled=report["enrolled"],
        listing_walk=len(walked),
        stored_at_server=stored,
        missed=stored - len(ledger),
        chats_enrolled=report["chat_enrolled"],
        chats_stored_at_server=chats_stored(llamastack),
    )
