"""Find a created response's ID in what the provider sent back, JSON or a server-sent event
stream, as the app reads it, with what makes it erasable by subject: the request's `metadata`,
`safety_identifier` and `user`. Pure but for the clock a creation time is checked against:
bytes in, a record (or nothing) out.

The three are read from the response object, which echoes them; from the request's own body
when the response does not (a provider that echoes less, or a body too long to read whole).
`safety_identifier` and `user` go into the record's metadata under those names, unless the
metadata has that key already. Whatever the daemon would refuse (core/record_input.py: too many
keys, a key or value too long, a control character) is left out, item by item, so that the ID
itself always gets through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from retention.core.ids import is_valid_id, validate_id
from retention.core.record_input import MAX_META, checked_name, metadata_of
from retention.core.times import parse_time, refuse_future
from retention.core.vocabulary import ObjectKind
from retention.errors import UsageError

MAX_JSON = 16 * 1024 * 1024  # past this, only the head of the body is searched
MAX_REQUEST = 16 * 1024 * 1024  # a longer request body is not parsed
_HEAD_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.:-]{0,199})"')
_HEAD_STORE = re.compile(rb'"store"\s*:\s*(true|false)')
SUBJECT_FIELDS = ("safety_identifier", "user")  # request fields that name the app's end user
ECHOED = ("metadata", *SUBJECT_FIELDS)
# a request body is parsed only when it may hold one of them, or `store` (an object key)
_ASKED_KEY = re.compile(rb'"(?:metadata|safety_identifier|user|store)"\s*:')
# what a chat completion says it is, whole or a chunk of a stream
CHAT_OBJECTS = ("chat.completion", "chat.completion.chunk")
_HEAD_CHAT = re.compile(rb'"object"\s*:\s*"chat\.completion')
_CREATES = ("/responses", "/conversations", "/chat/completions")


def is_create(method: str, path: str) -> bool:
    """Whether a request creates a response, a conversation or a chat completion (POST
    .../responses, .../conversations, .../chat/completions)."""
    return method.upper() == "POST" and path.rstrip("/").endswith(_CREATES)


def record_of(
    response: Any, asked: Callable[[], Mapping[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The ingest record of a created response object (None if it was not stored), or of a
    created conversation (always kept by the provider), with the conversation a response was
    made in. `asked` gives the request's fields, for what the response does not echo."""
    if isinstance(response, dict) and response.get("object") in CHAT_OBJECTS:
        return chat_record_of(response, asked or _nothing)
    if not isinstance(response, dict) or response.get("store") is False:
        return None
    rid = response.get("id")
    if not is_valid_id(rid):
        return None
    record: dict[str, Any] = {"id": rid}
    if response.get("object") == ObjectKind.CONVERSATION:
        record["object"] = ObjectKind.CONVERSATION.value
    conversation = response.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if "object" not in record and is_valid_id(conversation):
        record["conversation"] = conversation
    for key, check in _CHECKS.items():
        value = response.get(key)
        if value not in (None, "") and _fits(check, value):
            record[key] = value
    metadata = labels(response, asked or _nothing)
    if metadata:
        record["metadata"] = metadata
    return record


def chat_record_of(
    completion: Mapping[str, Any], asked: Callable[[], Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The ingest record of a chat completion (or of the first chunk of a streamed one): only
    one made with `store: true` is kept by the provider (the default is not to), and the
    answer does not say so: the request does. Its metadata is the request's."""
    if not (completion.get("store") is True or asked().get("store") is True):
        return None
    rid = completion.get("id")
    if not is_valid_id(rid):
        return None
    record: dict[str, Any] = {"id": rid, "object": ObjectKind.CHAT_COMPLETION.value}
    given = {"created_at": completion.get("created"), "model": completion.get("model")}
    for key, value in given.items():
        if value not in (None, "") and _fits(_CHECKS[key], value):
            record[key] = value
    metadata = labels(completion, asked)
    if metadata:
        record["metadata"] = metadata
    return record


def labels(response: Mapping[str, Any], asked: Callable[[], Mapping[str, Any]]) -> dict[str, str]:
    """The record's metadata: the response's `metadata` (else the request's), with its
    `safety_identifier` and `user` (else the request's) under those keys unless the metadata
    has that key already; only what the daemon accepts, never more than MAX_META keys (the
    subject fields first: they are what makes the record erasable)."""
    request: Mapping[str, Any] | None = None

    def field(name: str) -> Any:
        nonlocal request
        value = response.get(name)
        if value in (None, "", {}):  # not echoed (or echoed empty): the request may say more
            if request is None:
                request = asked()
            value = request.get(name)
        return value

    given = field("metadata")
    metadata = _accepted(given.items() if isinstance(given, dict) else ())
    subjects = _accepted(
        (name, value)
        for name in SUBJECT_FIELDS
        if name not in metadata and (value := field(name)) not in (None, "")
    )
    room = MAX_META - len(subjects)
    return {**dict(list(metadata.items())[:room]), **subjects}


def _accepted(items: Any) -> dict[str, str]:
    """The (key, value) items the daemon would accept as metadata, as it stores them."""
    kept: dict[str, str] = {}
    for key, value in items:
        try:
            kept.update(metadata_of({key: value}))
        except UsageError:  # too long, a control character, not text: this item alone goes
            continue
    return kept


def _created_at(value: Any) -> None:
    """A creation time the daemon accepts (by this machine's clock)."""
    refuse_future(parse_time(value, field="created_at"), datetime.now(UTC))


def _fits(check: Callable[[Any], Any], value: Any) -> bool:
    """Whether `check` passes `value`."""
    try:
        check(value)
    except UsageError:
        return False
    return True


# the record's other fields, each kept only when the daemon would accept it
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "created_at": _created_at,
    "model": lambda value: checked_name(value, "model"),
    "previous_response_id": validate_id,
}


def _nothing() -> Mapping[str, Any]:
    """No request to read."""
    return {}


def request_fields(body: bytes | None) -> Mapping[str, Any]:
    """The echoed fields of a request's JSON body, and `store` (empty when it has none, or is
    not JSON). A body too long to parse gives `store` alone, found by its text: a chat
    completion's ID must not be lost to a long prompt."""
    if not body or _ASKED_KEY.search(body) is None:
        return {}
    if len(body) > MAX_REQUEST:
        store = _HEAD_STORE.search(body)
        return {"store": store.group(1) == b"true"} if store else {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: parsed[k] for k in (*ECHOED, "store") if k in parsed}


class Sniffer:
    """Fed the body's chunks as the app reads them; `result()` once it has ended."""

    def __init__(self, content_type: str, request: bytes | None = None) -> None:
        self.sse = "text/event-stream" in content_type
        self.request = request  # the request's body, read only if the response echoes too little
        self.buffer = bytearray()
        self.found: dict[str, Any] | None = None
        self.settled = False

    def feed(self, chunk: bytes) -> None:
        """Take one chunk (never raises)."""
        if self.settled:
            return
        if not self.sse:
            if len(self.buffer) < MAX_JSON:
                self.buffer.extend(chunk)
            return
        self.buffer.extend(chunk)
        self._scan_events()

    def _scan_events(self) -> None:
        """Look at complete events until one carries the response object."""
        while b"\n\n" in self.buffer and not self.settled:
            raw, _, rest = bytes(self.buffer).partition(b"\n\n")
            self.buffer = bytearray(rest)
            for line in raw.splitlines():
                if line.startswith(b"data:"):
                    self._event(line[5:].strip())

    def _event(self, data: bytes) -> None:
        """One SSE data payload."""
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and isinstance(event.get("response"), dict):
            self.found = record_of(event["response"], self._asked)
            self.settled = True
        elif isinstance(event, dict) and event.get("object") in CHAT_OBJECTS:
            self.found = chat_record_of(event, self._asked)  # each chunk carries the ID
            self.settled = True

    def result(self) -> dict[str, Any] | None:
        """The record, once the body is complete."""
        if self.sse or self.settled:
            return self.found
        self.settled = True
        try:
            self.found = record_of(json.loads(bytes(self.buffer)), self._asked)
        except (ValueError, RecursionError):
            self.found = _from_head(bytes(self.buffer[:4096]), self._asked)
        return self.found

    def _asked(self) -> Mapping[str, Any]:
        """The request's echoed fields."""
        return request_fields(self.request)


def _from_head(head: bytes, asked: Callable[[], Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ID from the start of an over-long body, unless it says it was not stored, with the
    request's metadata."""
    found, store = _HEAD_ID.search(head), _HEAD_STORE.search(head)
    if found is None or (store is not None and store.group(1) == b"false"):
        return None
    record: dict[str, Any] = {"id": found.group(1).decode()}
    if _HEAD_CHAT.search(head) is not None:
        if asked().get("store") is not True:
            return None
        record["object"] = ObjectKind.CHAT_COMPLETION.value
    metadata = labels({}, asked)
    if metadata:
        record["metadata"] = metadata
    return record
