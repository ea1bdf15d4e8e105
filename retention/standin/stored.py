"""The stand-in's memory: stored responses, and a log of what was asked of it."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Seen:
    """One request the stand-in answered (no secrets: only whether auth was right)."""

    method: str
    path: str
    account: str | None
    status: int
    at: float = field(default_factory=time.time)  # when it was answered (unix seconds)


@dataclass
class ResponseStore:
    """Stored responses by ID, and every request seen."""

    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a response as the provider would; stored unless `store` is false."""
        item = {
            "id": body.get("id") or f"resp_{secrets.token_hex(12)}",
            "object": "response",
            "created_at": int(body.get("created_at") or time.time()),
            "model": body.get("model", "accounts/fireworks/models/llama-v3p1-8b-instruct"),
            "store": body.get("store", True) is not False,
            "metadata": body.get("metadata") or {},
            "safety_identifier": body.get("safety_identifier"),
            "user": body.get("user"),
            "previous_response_id": body.get("previous_response_id"),
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_standin",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "stand-in", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "instructions": None,
        }
        if item["store"]:
            self.responses[item["id"]] = item
        return item

    def page(self, limit: int, after: str | None) -> dict[str, Any]:
        """One page of the listing, newest first."""
        ordered = sorted(
            self.responses.values(), key=lambda r: (r["created_at"], r["id"]), reverse=True
        )
        return page_of(ordered, limit, after)

    def note(self, seen: Seen) -> None:
        """Remember one answered request."""
        self.seen.append(seen)
        self.counts[f"{seen.method} {seen.status}"] += 1


def page_of(ordered: list[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    """One page of a listing: the `limit` objects after the one called `after` (none when it
    is unknown), and whether more follow."""
    start = 0
    if after:
        ids = [item["id"] for item in ordered]
        start = ids.index(after) + 1 if after in ids else len(ids)
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "has_more": start + limit < len(ordered),
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
