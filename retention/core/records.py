"""What the ledger knows about one stored response, as the core sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from retention.core.ids import validate_id
from retention.core.times import require_aware
from retention.core.vocabulary import ObjectKind


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
    object: str = ObjectKind.RESPONSE  # what the ID names
    last_activity_at: datetime | None = None  # a conversation's last recorded turn

    def __post_init__(self) -> None:
        validate_id(self.response_id)
        require_aware(self.first_seen_at)
        if self.created_at is not None:
            require_aware(self.created_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedRecord:
    """A due record a sweep has leased, from its claim to its outcome: its facts (for the last
    policy check) and what its audit events carry. Only pending records are due, so a claimed
    record is pending when claimed; the ledger's row says whether it still is."""

    id: int
    response_id: str
    provider: str
    account: str | None
    created_at: datetime | None
    first_seen_at: datetime
    model: str | None
    metadata: Mapping[str, str]
    previous_response_id: str | None
    chain_root: str | None
    policy: str
    deadline: datetime
    deadline_basis: str
    attempts: int
    erasure_id: str | None = None  # the erasure request that made it due, if one did
    object: str = ObjectKind.RESPONSE
    last_activity_at: datetime | None = None
    items_deleted: int = 0  # a conversation's items deleted so far (a resumed deletion)

    def facts(self) -> ResponseFacts:
        """The facts policies match on, checked as `ResponseFacts` checks them."""
        return ResponseFacts(
            response_id=self.response_id,
            provider=self.provider,
            account=self.account,
            created_at=self.created_at,
            first_seen_at=self.first_seen_at,
            model=self.model,
            metadata=self.metadata,
            previous_response_id=self.previous_response_id,
            chain_root=self.chain_root,
            object=self.object,
            last_activity_at=self.last_activity_at,
        )
