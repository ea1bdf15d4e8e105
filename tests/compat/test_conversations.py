"""A conversation of 250 items at a real Llama Stack, recorded with `record --object
conversation` and deleted on its TTL items first: none is left, and the conversation is gone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.compat.support import (
    LlamaStack,
    configure,
    events,
    figure,
    retention,
    rows,
    verify_trail,
)

pytestmark = pytest.mark.compat
ITEMS, BATCH = 250, 20  # Llama Stack takes at most 20 items a request


def make_conversation(server: LlamaStack, items: int) -> str:
    """A conversation of `items` user messages, added `BATCH` at a time; its ID."""
    with server.client() as http:
        created = http.post("/conversations", json={"metadata": {"topic": "compat"}})
        created.raise_for_status()
        cid = str(created.json()["id"])
        for start in range(0, items, BATCH):
            batch = [
                {"type": "message", "role": "user", "content": f"message {n}"}
                for n in range(start, min(items, start + BATCH))
            ]
            http.post(f"/conversations/{cid}/items", json={"items": batch}).raise_for_status()
    return cid


def items_stored(server: LlamaStack, cid: str) -> int:
    """How many items of the conversation Llama Stack's store still holds."""
    found = server.sql("SELECT count(*) FROM conversation_items WHERE conversation_id = ?", cid)
    return int(found[0][0])


def test_a_250_item_conversation_is_deleted_items_first(
    workdir: Path, llamastack: LlamaStack
) -> None:
    """250 items: once due, one sweep deletes every item (none left in the server's store),
    then the conversation (GET and the item listing answer 404); `conversation.deleted` counts
    250 items, and the trail verifies."""
    configure(workdir, llamastack.base_url)
    cid = make_conversation(llamastack, ITEMS)
    assert items_stored(llamastack, cid) == ITEMS
    done = retention(workdir, "record", "--object", "conversation", cid)
    assert done.returncode == 0, done.stderr
    time.sleep(2.1)  # the `chats` policy: 1 s from when the ledger first saw it
    started = time.monotonic()
    sweep = retention(workdir, "sweep")
    took = time.monotonic() - started
    assert sweep.returncode == 0, sweep.stdout + sweep.stderr
    assert rows(workdir)[cid]["state"] == "deleted"
    left = items_stored(llamastack, cid)
    conversation = llamastack.status(f"/conversations/{cid}")
    listing = llamastack.status(f"/conversations/{cid}/items?limit=100&order=asc")
    assert (left, conversation, listing) == (0, 404, 404)
    (deleted,) = events(workdir, "conversation.deleted")
    assert deleted["response_id"] == cid and deleted["details"]["items"] == ITEMS, deleted
    pages = events(workdir, "conversation.items_deleted")
    assert sum(int(page["details"]["items"]) for page in pages) == ITEMS, pages
    assert events(workdir, "response.absent") == []
    verify = verify_trail(workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figure(
        "conversation",
        items_created=ITEMS,
        items_deleted=deleted["details"]["items"],
        item_pages=len(pages),
        items_left_at_server=left,
        conversation_status=conversation,
        sweep_s=f"{took:.1f}",
    )
