"""The stand-in's Conversations API: conversations, and the items responses add to them.

As OpenAI documents it: a conversation and its items are kept until deleted (no 30-day TTL);
deleting a conversation does not delete its items, which stay reachable by ID; the item
listing pages with `limit`, `after` and `order` and says `has_more`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from retention.standin.stored import page_of


@dataclass
class Conversation:
    """One conversation: its object, and its items in the order they were added."""

    body: dict[str, Any]
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: bool = False


@dataclass
class ConversationStore:
    """Conversations by ID (deleted ones kept, for their items)."""

    conversations: dict[str, Conversation] = field(default_factory=dict)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /conversations: a new conversation, with the items given."""
        conversation_id = body.get("id") or f"conv_{secrets.token_hex(24)}"
        made = {
            "id": conversation_id,
            "object": "conversation",
            "created_at": int(body.get("created_at") or time.time()),
            "metadata": body.get("metadata") or {},
        }
        conversation = Conversation(made)
        for item in body.get("items") or []:
            self._add(conversation, item)
        self.conversations[conversation_id] = conversation
        return made

    def live(self, conversation_id: str) -> Conversation | None:
        """The conversation, unless unknown or deleted."""
        found = self.conversations.get(conversation_id)
        return None if found is None or found.deleted else found

    def add_turn(self, conversation_id: str, said: Any, answered: str) -> bool:
        """A response made in the conversation: its input and its output become items;
        False when there is no such conversation."""
        conversation = self.live(conversation_id)
        if conversation is None:
            return False
        text = said if isinstance(said, str) else str(said)
        self._add(conversation, {"type": "message", "role": "user", "content": text})
        self._add(conversation, {"type": "message", "role": "assistant", "content": answered})
        return True

    def page(
        self, conversation_id: str, limit: int, after: str | None, order: str
    ) -> dict[str, Any] | None:
        """One page of a live conversation's items; None when it is gone."""
        conversation = self.live(conversation_id)
        if conversation is None:
            return None
        ordered = list(conversation.items.values())
        if order != "asc":
            ordered.reverse()
        return page_of(ordered, limit, after)

    def delete_item(self, conversation_id: str, item_id: str) -> dict[str, Any] | None:
        """Delete one item, reachable by ID even once its conversation is deleted; the
        conversation's object, or None when there was no such item."""
        conversation = self.conversations.get(conversation_id)
        if conversation is None or conversation.items.pop(item_id, None) is None:
            return None
        return conversation.body

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation (not its items); False when it was not there."""
        conversation = self.live(conversation_id)
        if conversation is None:
            return False
        conversation.deleted = True
        return True

    def census(self) -> dict[str, Any]:
        """What is stored: each conversation's items left, and whether it is deleted."""
        return {
            cid: {"deleted": c.deleted, "items": len(c.items)}
            for cid, c in self.conversations.items()
        }

    @staticmethod
    def _add(conversation: Conversation, item: dict[str, Any]) -> None:
        """Store one item with a fresh ID."""
        item_id = f"msg_{secrets.token_hex(16)}"
        conversation.items[item_id] = {
            "id": item_id,
            "type": item.get("type", "message"),
            "role": item.get("role", "user"),
            "status": "completed",
            "content": [{"type": "input_text", "text": str(item.get("content", ""))}],
        }
