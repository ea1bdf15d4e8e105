"""The project's words, each defined here once: record states, the outcomes of a deletion,
the audit trail's event names (the auditors' contract, listed in docs/auditors-guide.md) and
the keys of the ledger's `meta` table.

The enums are `StrEnum`s: a member is its string (`State.PENDING == "pending"`), so rows read
back from the database, JSON documents and audit records compare with them directly.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a tracked record stands. Open states can still be swept; closed ones are final
    (only `retention retry` reopens a failed one)."""

    PENDING = "pending"  # waiting for its deadline, or due
    HELD = "held"  # a legal hold keeps it, whatever its deadline
    DELETED = "deleted"  # the provider answered 2xx to DELETE
    ABSENT = "absent"  # the provider answered 404: it no longer had it
    FAILED = "failed"  # a permanent failure, with its reason


STATES: tuple[State, ...] = tuple(State)
OPEN_STATES: tuple[State, ...] = (State.PENDING, State.HELD)
CLOSED_STATES: tuple[State, ...] = (State.DELETED, State.ABSENT, State.FAILED)


class ObjectKind(StrEnum):
    """What a tracked ID names at the provider (a record's `object`)."""

    RESPONSE = "response"  # a stored response (`resp_...`): kept 30 days unless deleted
    CONVERSATION = "conversation"  # a conversation (`conv_...`) and its items: kept until deleted
    # a chat completion made with `store: true` (`chatcmpl-...`): kept until deleted
    CHAT_COMPLETION = "chat.completion"


OBJECT_KINDS: tuple[ObjectKind, ...] = tuple(ObjectKind)


class Basis(StrEnum):
    """What a record's deadline counts from."""

    CREATED_AT = "created_at"  # the response's creation time, as the provider or app gave it
    FIRST_SEEN = "first_seen"  # when the ledger first saw the ID
    CHAIN = "chain"  # its conversation's newest turn (`keep_chains_intact`)
    ERASURE = "erasure"  # a data subject's erasure request: due at the request's time
    LAST_ACTIVITY = "last_activity"  # a conversation's last recorded turn (`ttl_from`)


class Outcome(StrEnum):
    """What one deletion attempt of one record came to. The first five classify a provider's
    answer (core/outcomes.py); the rest are the sweep's own."""

    DELETED = "deleted"  # 2xx (and, with verify_after_delete, a 404 after it)
    ABSENT = "absent"  # 404: already gone, a compliant outcome
    RETRY = "retry"  # 429, 5xx, transport errors: try again after a backoff
    AUTH = "auth"  # 401/403: stop this provider's sweep, mark nothing
    FAILED = "failed"  # any other 4xx, or a 2xx saying "not deleted": permanent for this ID
    DEFERRED = "deferred"  # out of attempts in this sweep: due again later
    UNCONFIRMED = "unconfirmed"  # 2xx to DELETE, but the response is still there
    STOPPED = "stopped"  # the sweep stopped (auth failure, shutdown) before this record
    SKIPPED = "skipped"  # the last look found it held, changed or not due: never early
    # the provider cannot delete this kind of object (405, or no such API): kept pending,
    # charged nothing, one `provider.cannot_delete` for the provider and kind
    UNSUPPORTED = "unsupported"
    ERROR = "error"  # something of ours broke: the record waits, charged nothing


CLOSING: tuple[Outcome, ...] = (Outcome.DELETED, Outcome.ABSENT)  # compliant, final outcomes
FINAL: tuple[Outcome, ...] = (Outcome.DELETED, Outcome.ABSENT, Outcome.FAILED)  # close a record


class Event(StrEnum):
    """The name of every event the audit trail records. Log lines use other names (such as
    `sweep.done`); these are only for the trail."""

    RESPONSE_RECORDED = "response.recorded"
    RESPONSE_DELETED = "response.deleted"
    RESPONSE_ABSENT = "response.absent"
    RESPONSE_DELETE_ATTEMPT_FAILED = "response.delete_attempt_failed"
    RESPONSE_DELETE_UNCONFIRMED = "response.delete_unconfirmed"
    RESPONSE_FAILED = "response.failed"
    RESPONSE_HELD = "response.held"
    RESPONSE_RELEASED = "response.released"
    RESPONSE_REQUEUED = "response.requeued"
    RESPONSE_DEADLINE_CHANGED = "response.deadline_changed"
    RESPONSE_DEADLINE_TIGHTENED = "response.deadline_tightened"
    POLICY_LOADED = "policy.loaded"
    POLICY_REJECTED = "policy.rejected"
    SWEEP_STARTED = "sweep.started"
    SWEEP_FINISHED = "sweep.finished"
    DAEMON_STARTED = "daemon.started"
    DAEMON_STOPPED = "daemon.stopped"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    PROVIDER_AUTH_FAILED = "provider.auth_failed"
    PROVIDER_MISCONFIGURED = "provider.misconfigured"
    PROVIDER_UNREACHABLE = "provider.unreachable"
    PROVIDER_CANNOT_DELETE = "provider.cannot_delete"
    ERASURE_REQUESTED = "erasure.requested"
    ERASURE_COMPLETED = "erasure.completed"
    ERASURE_OVERDUE = "erasure.overdue"
    HOLD_PLACED = "hold.placed"
    HOLD_LIFTED = "hold.lifted"
    # a conversation's deletion: its items page by page, then the conversation itself; the
    # other events of a conversation's record are the `response.*` ones, with `object` in
    # their details
    CONVERSATION_ITEMS_DELETED = "conversation.items_deleted"
    CONVERSATION_DELETED = "conversation.deleted"


# the event that closes a record for each final outcome
FINAL_EVENTS: dict[Outcome, Event] = {
    Outcome.DELETED: Event.RESPONSE_DELETED,
    Outcome.ABSENT: Event.RESPONSE_ABSENT,
    Outcome.FAILED: Event.RESPONSE_FAILED,
}
# the events a deletion receipt can prove: the provider no longer holds the response
GONE_EVENTS: tuple[Event, ...] = (
    Event.RESPONSE_DELETED,
    Event.RESPONSE_ABSENT,
    Event.CONVERSATION_DELETED,
)


class Notice(StrEnum):
    """Faults a process logs that are not in the audit trail (nothing was committed), and that
    notifications (`notify` in retention.yaml) carry beside the trail's events."""

    SWEEP_CRASHED = "sweep.crashed"  # a scheduled sweep raised
    AUDIT_FILE_WRITE_FAILED = "audit.file_write_failed"  # committed lines not appended to the file
    AUDIT_FILE_DIVERGED = "audit.file_diverged"  # the file's line differs from the ledger's
    AUDIT_CHECKPOINT_FAILED = "audit.checkpoint_failed"  # the daemon could not sign a checkpoint


class MetaKey(StrEnum):
    """Keys of the ledger's `meta` table (one value each), and prefixes of per-name keys."""

    POLICY_DIGEST = "policy_digest"  # the SHA-256 of the policies last applied
    # the policies file a daemon last applied: path, SHA-256 of its bytes, when read (JSON;
    # daemon/policy_watch.py: a replica waits only for a newer copy of its own file)
    POLICY_FILE = "policy_file"
    LAST_SWEEP = "last_sweep"  # the last sweep's summary, JSON
    KEY_TRANSITIONS = "audit:key_transitions"  # every checkpoint that handed over to a new key
    RETIRED_KEYS = "audit:retired_keys"  # public keys rotated away from, oldest first
    CHECKPOINT = "checkpoint:"  # + chain: the last checkpoint of that chain
    DISCOVER = "discover:"  # + provider: discovery's crawl state
    # + provider/object: why that provider cannot delete that kind, since when (JSON); the
    # `provider.cannot_delete` event is written when it is set, and it goes at a deletion
    CANNOT_DELETE = "cannot_delete:"
    REPLICA = "replica:"  # + replica name: when it last swept
    # records with an id above this were recorded before subjects were indexed, up to the id
    # SUBJECTS_BACKFILL_UNTIL; the backfill moves it on in batches (services/subject_index.py)
    SUBJECTS_BACKFILL_AFTER = "erasure:backfill_after"
    SUBJECTS_BACKFILL_UNTIL = "erasure:backfill_until"


class ErasureState(StrEnum):
    """Where an erasure request stands."""

    OPEN = "open"  # some of its records are still to be deleted
    COMPLETED = "completed"  # every record is deleted, absent, failed or withheld by a hold


def meta_key(prefix: MetaKey, name: str) -> str:
    """The key of `name` under a per-name prefix (`meta_key(MetaKey.DISCOVER, "openai")`)."""
    return prefix.value + name
