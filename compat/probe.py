"""Probe a live Llama Stack 0.7.x for the behaviours compat/NOTES.md records.

Run ``/work/main/.venv/bin/python compat/probe.py [--keep DIR]``: it starts the server with two
principals' keys, sends raw HTTP requests and prints each request with the status, the headers
that matter and the body it got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llamastack import MODEL, start_llamastack

KEYS = {"key-alice": "alice", "key-bob": "bob"}


def show(resp: httpx.Response, note: str = "", width: int = 400) -> Any:
    """Print one exchange compactly and return its JSON body (or None)."""
    req = resp.request
    body = resp.text if len(resp.text) <= width else resp.text[:width] + "…"
    rid, ctype = resp.headers.get("x-request-id"), resp.headers.get("content-type")
    print(f"\n{req.method} {req.url}  {note}".rstrip())
    print(f"  -> {resp.status_code} x-request-id={rid} content-type={ctype}")
    print(f"  {body}")
    try:
        return resp.json()
    except ValueError:
        return None


def create(client: httpx.Client, text: str, **extra: Any) -> dict[str, Any]:
    """Create one response and return its JSON."""
    resp = client.post("/responses", json={"model": MODEL, "input": text, **extra})
    resp.raise_for_status()
    out: dict[str, Any] = resp.json()
    return out


async def burst(base_url: str, count: int) -> list[str]:
    """Create ``count`` stored responses concurrently; return their IDs."""
    headers = {"Authorization": "Bearer key-alice"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:

        async def one(i: int) -> str:
            """Create one response."""
            body = {"model": MODEL, "input": f"burst {i}", "store": True}
            resp = await client.post("/responses", json=body)
            resp.raise_for_status()
            return str(resp.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def page_all(client: httpx.Client, path: str, limit: int) -> tuple[list[str], int]:
    """Follow ``after`` cursors with ``limit``; return the IDs seen and the page count."""
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while pages < 100:
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after else {})}
        body = client.get(path, params=params).json()
        pages += 1
        seen += [item["id"] for item in body["data"]]
        if not body.get("has_more") or not body["data"]:
            break
        after = body["data"][-1]["id"]
    return seen, pages


def same_second(client: httpx.Client, base_url: str, workdir: Path) -> None:
    """Check whether ``after`` skips responses sharing the cursor's created_at second."""
    started = time.monotonic()
    ids = asyncio.run(burst(base_url, 120))
    took = time.monotonic() - started
    db = sqlite3.connect(workdir / "sql_store.db")
    marks = ",".join("?" * len(ids))
    seconds = db.execute(
        f"SELECT created_at, COUNT(*) FROM responses WHERE id IN ({marks}) GROUP BY created_at",
        ids,
    ).fetchall()
    print(f"\n120 responses made concurrently in {took:.1f}s; created_at histogram: {seconds}")
    total = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    seen, pages = page_all(client, "/responses", 10)
    print(f"natural: {total} stored, paging limit=10 saw {len(seen)} distinct={len(set(seen))}")
    # Force every row into one second (the column the cursor compares), as a burst that the
    # server really did finish within a second would leave them, and page again.
    db.execute("UPDATE responses SET created_at = (SELECT MIN(created_at) FROM responses)")
    db.commit()
    seen, pages = page_all(client, "/responses", 10)
    print(f"forced one second: {total} stored, limit=10 saw {len(seen)} in {pages} pages")
    db.close()


def responses_section(alice: httpx.Client, bob: httpx.Client, root: httpx.Client) -> None:
    """Responses: IDs, 404s, deletion, limits, cursors, principals."""
    first = create(alice, "one", store=True)
    rid = first["id"]
    print(f"\nresponse id={rid} created_at={first['created_at']}")
    show(alice.get(f"/responses/{rid}"), "(owner)", 200)
    show(bob.get(f"/responses/{rid}"), "(another principal)")
    show(bob.get("/responses"), "(another principal lists)")
    show(bob.delete(f"/responses/{rid}"), "(another principal deletes)")
    show(alice.get("/responses/resp_unknown"), "(unknown id)")
    show(root.get("/responses/resp_unknown"), "(base URL without /v1)")
    show(alice.get("/openai/v1/responses"), "(the pre-0.3 /v1/openai/v1 prefix)")
    show(alice.get(f"/responses/{rid}/input_items"), "(input items)")
    show(alice.delete(f"/responses/{rid}"), "(delete)")
    show(alice.delete(f"/responses/{rid}"), "(delete again)")
    show(alice.get(f"/responses/{rid}"), "(after delete)")
    show(alice.get("/responses", params={"after": rid}), "(after = deleted id)")
    show(alice.get("/responses", params={"after": "resp_unknown"}), "(after = unknown id)")
    for _ in range(3):
        create(alice, "filler", store=True)
    show(alice.get("/responses", params={"limit": 200}), "(limit=200)", 600)
    body = show(alice.get("/responses", params={"limit": 100}), "(limit=100)", 100)
    print(f"  limit=100 returned {len(body['data'])} items, has_more={body.get('has_more')}")
    body = show(alice.get("/responses", params={"limit": 2}), "(limit=2)", 100)
    print(f"  limit=2 returned {len(body['data'])} items, has_more={body.get('has_more')}")
    show(alice.get("/responses"), "(no limit)", 100)
    show(alice.get("/responses", params={"limit": 0}), "(limit=0)", 200)
    show(alice.get("/responses", params={"limit": 100000}), "(limit=100000)", 200)
    show(alice.post("/responses", json={"model": MODEL}), "(missing input)")


def conversation_section(alice: httpx.Client, bob: httpx.Client) -> None:
    """Conversations: IDs, items paging with after/has_more, other principal."""
    items = [{"type": "message", "role": "user", "content": f"m{i}"} for i in range(5)]
    conv = show(alice.post("/conversations", json={"items": items}), "(create with 5 items)")
    cid = conv["id"]
    path = f"/conversations/{cid}/items"
    page = show(alice.get(path, params={"limit": 2, "order": "asc"}), "(limit=2)", 100)
    print(f"  page 1: {[i['content'] for i in page['data']]} has_more={page.get('has_more')}")
    after = page["data"][-1]["id"]
    page = show(alice.get(path, params={"limit": 2, "order": "asc", "after": after}), "", 100)
    print(f"  page 2 (after={after}): {[i['content'] for i in page['data']]}")
    print(f"  has_more={page.get('has_more')}")
    show(bob.get(f"/conversations/{cid}"), "(another principal)")
    show(alice.get("/conversations/conv_unknown"), "(unknown conversation)")
    show(alice.delete(f"/conversations/{cid}"), "(delete)")


def chat_section(alice: httpx.Client, bob: httpx.Client) -> None:
    """Chat completions: IDs, list, delete, other principal."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "store": True}
    done = show(alice.post("/chat/completions", json=body), "(store=True)")
    time.sleep(0.5)
    listing = show(alice.get("/chat/completions"), "(list)", 300)
    print(f"  list has {len(listing['data'])} items; ids: {[c['id'] for c in listing['data']]}")
    print(f"  first input_messages: {[c['input_messages'] for c in listing['data']][:3]}")
    show(bob.get(f"/chat/completions/{done['id']}"), "(another principal)")
    show(alice.delete(f"/chat/completions/{done['id']}"), "(delete)")
    unstored = {**body, "store": False}
    gone = alice.post("/chat/completions", json=unstored).json()
    time.sleep(0.5)
    show(alice.get(f"/chat/completions/{gone['id']}"), "(store=False, retrieve)")
    show(bob.get("/chat/completions"), "(another principal lists)")
    loose = create(alice, "marker-not-stored", store=False)
    time.sleep(0.5)
    inner = [
        c["id"]
        for c in alice.get("/chat/completions", params={"limit": 100}).json()["data"]
        if "marker-not-stored" in json.dumps(c["input_messages"])
    ]
    print(f"\nresponse {loose['id']} store=False left chat completions {inner}")


def main() -> int:
    """Start the server and run every probe."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamastack-probe-") as tmp:
        workdir = Path(args.keep or tmp)
        started = time.monotonic()
        with start_llamastack(workdir, auth=KEYS) as base_url:
            print(f"started in {time.monotonic() - started:.1f}s; base_url={base_url}")
            root_url = base_url.removesuffix("/v1")

            def client(key: str, url: str = base_url) -> httpx.Client:
                """A raw client for one key."""
                auth = {"Authorization": f"Bearer {key}"}
                return httpx.Client(base_url=url, headers=auth, timeout=60, trust_env=False)

            alice, bob = client("key-alice"), client("key-bob")
            show(alice.get("/models"), "(models)")
            show(client("key-refused").get("/models"), "(refused key)")
            show(httpx.get(f"{base_url}/models", timeout=10, trust_env=False), "(no key)")
            show(alice.get("/health"), "(health)")
            responses_section(alice, bob, client("key-alice", root_url))
            conversation_section(alice, bob)
            chat_section(alice, bob)
            same_second(alice, base_url, workdir)
            upstream = json.loads((workdir / "tokens.json").read_text())
            print(f"\ntokens used: {upstream}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
