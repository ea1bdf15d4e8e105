"""How real providers differ, for the stand-in to play each (`--flavor`, knob `flavor`).

Every difference here was documented by the provider or seen against its server (README,
"Compatibility"): a test that passes against the stand-in in one flavour only proves the
product copes with that one.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Flavour:
    """One provider's ways."""

    name: str
    lists_responses: bool = True  # GET /responses exists (OpenAI has none)
    # error bodies: {"error": {"message"}}, or FastAPI's {"detail": "..."} (Llama Stack, all
    # but its 401s)
    error_shape: str = "error"
    request_ids: bool = True  # answers carry x-request-id
    delete_body: str = "object"  # DELETE answers {"id", "object", "deleted"}, or "message"
    response_ids: str = "hex"  # resp_ + hex, or resp_ + a dashed UUID ("uuid")
    conversation_hex: int = 48  # conv_ + this many hex digits
    limit_over_100: str = "cap"  # `limit` above 100: capped, or "refuse" (400)
    unknown_after: str = "empty"  # `after` naming no listed object: an empty page, or "refuse"
    items_follow_after: bool = True  # False: item listings ignore `after`, never say has_more
    null_conversation: bool = False  # a response outside a conversation says "conversation": null
    auth: str = "bearer"  # the key in `Authorization: Bearer`, or in an "api-key" header
    path: str = "/v1"  # where the API is served
    # stored chat completions: those made with `store: true`, deletable ("delete"); every one,
    # listed but never deletable, DELETE answering 405 ("keep"); none at all ("none")
    chat_completions: str = "delete"
    models_list_object: bool = True  # GET /models says "object": "list" (Llama Stack does not)
    foreign_chat_status: int = 404  # another principal's chat completion (Llama Stack: 400)

    def response_id(self) -> str:
        """A new response ID of this provider's form."""
        if self.response_ids == "uuid":
            return f"resp_{uuid.uuid4()}"
        return f"resp_{secrets.token_hex(24)}"

    def conversation_id(self) -> str:
        """A new conversation ID of this provider's form."""
        return f"conv_{secrets.token_hex(self.conversation_hex // 2)}"


FLAVOURS = {
    "fireworks": Flavour(
        name="fireworks", delete_body="message", request_ids=False, chat_completions="none"
    ),
    "openai": Flavour(name="openai", lists_responses=False),
    "azure": Flavour(name="azure", lists_responses=False, auth="api-key", path="/openai/v1"),
    "llamastack": Flavour(
        name="llamastack",
        error_shape="detail",
        request_ids=False,
        response_ids="uuid",
        limit_over_100="refuse",
        unknown_after="refuse",
        items_follow_after=False,
        null_conversation=True,
        chat_completions="keep",
        models_list_object=False,
        foreign_chat_status=400,
    ),
}
