"""What capture sends with each ID so that it can be erased by subject: the request's
metadata, `safety_identifier` and `user`, from the response's echo or the request itself, and
never anything the daemon would refuse (the ID always gets through)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import retention.capture
from retention.capture.sniff import Sniffer, labels, record_of, request_fields
from retention.core.record_input import MAX_META, MAX_VALUE, from_mapping


def _request(**fields: Any) -> bytes:
    """A request body as the SDK sends it."""
    return json.dumps(
        {"model": "m", "input": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


def _asked(**fields: Any) -> Any:
    """The request's fields, as the sniffer reads them."""
    return lambda: request_fields(_request(**fields))


def test_the_echo_gives_metadata_and_the_identifiers() -> None:
    """The response's metadata, safety_identifier and user all become the record's metadata."""
    response = {"id": "resp_1", "metadata": {"user_id": "u1"}, "safety_identifier": "s1",
                "user": "old"}  # fmt: skip
    record = record_of(response)
    assert record == {"id": "resp_1", "metadata": {"user_id": "u1", "safety_identifier": "s1",
                                                   "user": "old"}}  # fmt: skip


def test_what_the_response_does_not_echo_comes_from_the_request() -> None:
    """A provider that echoes no identifier (or empty metadata): the request's are used."""
    response = {"id": "resp_1", "metadata": {}}
    record = record_of(response, _asked(metadata={"user_id": "u1"}, safety_identifier="s1"))
    assert record is not None
    assert record["metadata"] == {"user_id": "u1", "safety_identifier": "s1"}


def test_the_echo_wins_over_the_request() -> None:
    """When the response echoes a field, the request is not consulted for it."""
    response = {"id": "resp_1", "metadata": {"user_id": "echoed"}, "safety_identifier": "s-e"}
    record = record_of(response, _asked(metadata={"user_id": "asked"}, safety_identifier="s-a"))
    assert record is not None and record["metadata"] == {
        "user_id": "echoed",
        "safety_identifier": "s-e",
    }


def test_metadata_keeps_its_own_value_of_an_identifier_key() -> None:
    """`safety_identifier` already in metadata is not replaced by the request field."""
    response = {"id": "resp_1", "metadata": {"safety_identifier": "mine"}, "safety_identifier": "x"}
    assert labels(response, dict) == {"safety_identifier": "mine"}


def test_a_request_without_those_keys_is_not_parsed() -> None:
    """A body holding none of the keys (only `"role": "user"`) is not even parsed; nor junk."""
    assert request_fields(_request()) == {}
    assert request_fields(b'{"metadata": ') == {}
    assert request_fields(b"[1, 2]") == {}
    assert request_fields(None) == {}


def test_what_the_daemon_would_refuse_is_left_out_and_the_id_kept() -> None:
    """Oversize values, bad keys and fields the daemon refuses go; the ID and the rest stay."""
    metadata = {f"k{i}": str(i) for i in range(MAX_META + 10)}
    metadata |= {"long": "x" * (MAX_VALUE + 1), "bad\x00key": "v", "nested": {"a": 1},
                 "count": 3, "k" * 65: "v"}  # fmt: skip
    future = int((datetime.now(UTC) + timedelta(days=2)).timestamp())
    response = {"id": "resp_1", "metadata": metadata, "safety_identifier": "s" * (MAX_VALUE + 1),
                "user": "u9", "model": "m" * 300, "previous_response_id": "bad id",
                "created_at": future}  # fmt: skip
    record = record_of(response)
    assert record is not None and set(record) == {"id", "metadata"}
    kept = record["metadata"]
    assert len(kept) == MAX_META and kept["user"] == "u9"
    assert "long" not in kept and "nested" not in kept and "safety_identifier" not in kept
    assert from_mapping(record, now=datetime.now(UTC)).response_id == "resp_1"


@pytest.mark.parametrize(
    "value",
    ["\ud800", "x" * (MAX_VALUE + 1), "tab\tok", 12, 2**70, float("nan"), True, None, ["a"], ""],
)
def test_every_record_captured_is_one_the_daemon_accepts(value: Any) -> None:
    """Whatever a provider echoes as metadata or identifier, the record passes the daemon's
    checks and keeps its ID."""
    response = {"id": "resp_1", "metadata": {"user_id": value}, "safety_identifier": value}
    record = record_of(response)
    assert record is not None and record["id"] == "resp_1"
    accepted = from_mapping(json.loads(json.dumps(record)), now=datetime.now(UTC))
    assert accepted.response_id == "resp_1"


def test_a_stream_takes_the_request_when_the_event_echoes_too_little() -> None:
    """An SSE body: the created event's response, and the request's safety_identifier."""
    event = {"type": "response.created", "response": {"id": "resp_s", "metadata": {"a": "1"}}}
    sniffer = Sniffer("text/event-stream", _request(safety_identifier="s1"))
    sniffer.feed(f"event: response.created\ndata: {json.dumps(event)}\n\n".encode())
    assert sniffer.result() == {"id": "resp_s", "metadata": {"a": "1", "safety_identifier": "s1"}}


def test_an_over_long_body_still_carries_the_request_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body read only at its head: the ID from it, the metadata from the request."""
    monkeypatch.setattr("retention.capture.sniff.MAX_JSON", 64)
    sniffer = Sniffer("application/json", _request(metadata={"user_id": "u1"}))
    sniffer.feed(b'{"id": "resp_long", "output": "' + b"x" * 100)
    sniffer.feed(b"x" * 100 + b'"}')  # past MAX_JSON: not kept
    assert sniffer.result() == {"id": "resp_long", "metadata": {"user_id": "u1"}}


class _Shipper:
    """Keeps what would be shipped."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def put(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_the_hook_reads_the_request_the_client_sent() -> None:
    """Through an httpx client: the record carries the metadata and identifier it was sent."""
    body = json.dumps({"id": "resp_h", "store": True}).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=iter([body]), headers={"content-type": "application/json"}
        )

    shipper = _Shipper()
    hook = retention.capture._sync_hook(shipper, "fw")  # type: ignore[arg-type]
    with httpx.Client(transport=httpx.MockTransport(answer), event_hooks={"response": [hook]}) as c:
        c.post("https://api.example.com/v1/responses",
               json={"input": "hi", "metadata": {"user_id": "u1"}, "user": "u-old"})  # fmt: skip
    assert shipper.records == [
        {"id": "resp_h", "metadata": {"user_id": "u1", "user": "u-old"}, "provider": "fw"}
    ]


@pytest.mark.parametrize(("store", "recorded"), [(True, True), (False, False), (None, False)])
def test_a_chat_completion_is_recorded_only_when_the_request_stored_it(
    store: bool | None, recorded: bool
) -> None:
    """The answer does not say whether it was stored: `store: true` in the request does, with
    the request's metadata; a streamed chunk counts as the whole."""
    asked = {"messages": [], "metadata": {"user_id": "u1"}}
    if store is not None:
        asked["store"] = store
    body = json.dumps(asked).encode()
    created = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    for answer in ({"object": "chat.completion"}, {"object": "chat.completion.chunk"}):
        made = {**answer, "id": "chatcmpl-1", "created": created}
        found = record_of(made, lambda: request_fields(body))
        if not recorded:
            assert found is None
            continue
        assert found == {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created_at": created,
            "metadata": {"user_id": "u1"},
        }


def test_a_prompt_too_long_to_parse_still_says_it_was_stored() -> None:
    """A request body past what is parsed still gives `store`, read from its text, so the
    chat completion's ID is not lost to a long prompt."""
    prompt = "x" * (16 * 1024 * 1024)
    body = json.dumps({"store": True, "messages": [{"role": "user", "content": prompt}]})
    assert request_fields(body.encode()) == {"store": True}
    found = record_of({"object": "chat.completion", "id": "chatcmpl-2"}, lambda: {"store": True})
    assert found == {"id": "chatcmpl-2", "object": "chat.completion"}
