"""What the ledger knows about one stored response, as the core sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from retention.core.ids import validate_id
from retention.core.times import require_aware


@dataclass(frozen=True, slots=True)
class ResponseFacts:
    """The facts about a stored response that policies can match on."""

    response_id: str
    provider: str
    first_seen_at: datetime
    account: str | None = None
    created_at: datetime | None = None
    model: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    previous_response_id: str | None = None
    chain_root: str | None = None  # the first turn of its conversation, as the ledger knows it

    def __post_init__(self) -> None:
        validate_id(self.response_id)
        require_aware(self.first_seen_at)
        if self.created_at is not None:
            require_aware(self.created_at)
