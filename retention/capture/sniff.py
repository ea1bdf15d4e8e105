"""Find a created response's ID in what the provider sent back, JSON or a server-sent event
stream, as the app reads it. Pure: bytes in, a record (or nothing) out."""

from __future__ import annotations

import json
import re
from typing import Any

from retention.core.ids import is_valid_id

MAX_JSON = 16 * 1024 * 1024  # past this, only the head of the body is searched
_HEAD_ID = re.compile(rb'"id"\s*:\s*"([A-Za-z0-9][A-Za-z0-9_.:-]{0,199})"')
_HEAD_STORE = re.compile(rb'"store"\s*:\s*(true|false)')


def is_create(method: str, path: str) -> bool:
    """Whether a request creates a response (POST .../responses)."""
    return method.upper() == "POST" and path.rstrip("/").endswith("/responses")


def record_of(response: Any) -> dict[str, Any] | None:
    """The ingest record of a created response object, or None if it was not stored."""
    if not isinstance(response, dict) or response.get("store") is False:
        return None
    rid = response.get("id")
    if not is_valid_id(rid):
        return None
    record: dict[str, Any] = {"id": rid}
    for key in ("created_at", "model", "previous_response_id"):
        if response.get(key) is not None:
            record[key] = response[key]
    if isinstance(response.get("metadata"), dict) and response["metadata"]:
        record["metadata"] = response["metadata"]
    return record


class Sniffer:
    """Fed the body's chunks as the app reads them; `result()` once it has ended."""

    def __init__(self, content_type: str) -> None:
        self.sse = "text/event-stream" in content_type
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
            self.found = record_of(event["response"])
            self.settled = True

    def result(self) -> dict[str, Any] | None:
        """The record, once the body is complete."""
        if self.sse or self.settled:
            return self.found
        self.settled = True
        try:
            self.found = record_of(json.loads(bytes(self.buffer)))
        except ValueError:
            self.found = _from_head(bytes(self.buffer[:4096]))
        return self.found


def _from_head(head: bytes) -> dict[str, Any] | None:
    """The ID from the start of an over-long body, unless it says it was not stored."""
    found, store = _HEAD_ID.search(head), _HEAD_STORE.search(head)
    if found is None or (store is not None and store.group(1) == b"false"):
        return None
    return {"id": found.group(1).decode()}
