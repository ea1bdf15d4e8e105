"""The stand-in's Chat Completions, stored as OpenAI and Azure OpenAI store them.

A chat completion made with `store: true` is kept until deleted (it has no TTL); the default
is not to store it. `GET /chat/completions` lists the stored ones (`after`, `limit`, `order`,
`metadata[KEY]=VALUE`); `GET` and `DELETE /chat/completions/{id}`; a deletion answers
`{"id", "object": "chat.completion.deleted", "deleted": true}`. How each flavour differs
(Llama Stack keeps every one and cannot delete them; Fireworks keeps none) is in flavours.py.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from retention.standin.stored import page_of


def completion_of(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completion a request makes: one fixed answer, with its usage."""
    return {
        "id": body.get("id") or f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(body.get("created") or time.time()),
        "model": body.get("model", "stand-in"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "stand-in"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunks_of(completion: dict[str, Any]) -> list[dict[str, Any]]:
    """A streamed chat completion: a chunk with the text, then one that finishes it."""
    head = {k: completion[k] for k in ("id", "created", "model")}
    return [
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "stand-in"}}],
        },
        {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        },
    ]


@dataclass
class ChatCompletionStore:
    """Stored chat completions by ID, with the request's metadata and messages."""

    completions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def keep(self, completion: dict[str, Any], body: dict[str, Any]) -> None:
        """Store a chat completion as listed: the answer, the request's metadata and input."""
        self.completions[completion["id"]] = {
            **completion,
            "metadata": body.get("metadata") or {},
            "input_messages": body.get("messages") or [],
        }

    def page(
        self, limit: int, after: str | None, order: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        """One page of the listing (oldest first unless `order` is desc), filtered by
        metadata."""
        matching = [
            c
            for c in self.completions.values()
            if all(c["metadata"].get(k) == v for k, v in metadata.items())
        ]
        ordered = sorted(matching, key=lambda c: (c["created"], c["id"]), reverse=order == "desc")
        return page_of(ordered, limit, after)
