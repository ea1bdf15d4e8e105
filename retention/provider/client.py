"""The provider client on httpx: DELETE and GET one response, nothing raised for HTTP status.

Every transport problem becomes an Answer with `status=None`; the sweep decides what it means.
An ID reaches a URL only through `validate_id`. Every value the provider sends that we keep
(a request ID header, error text, listing items) passes `scrub` or `redact_tree` here, before
it can reach the ledger, the trail, a log line or an error: a provider echoing our key (raw,
JSON-escaped or in a header) leaves `[redacted]`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from retention import __version__
from retention.config.settings import ProviderSettings
from retention.core.ids import is_valid_id, validate_id
from retention.core.outcomes import parse_retry_after
from retention.core.quoting import quote
from retention.core.times import utcnow
from retention.core.vocabulary import ObjectKind
from retention.errors import (
    CursorRefused,
    DiscoveryUnsupported,
    ProviderAuthError,
    ProviderError,
)
from retention.provider.transport import AiohttpTransport
from retention.redaction import redact_tree, register_secret, scrub

REQUEST_ID_HEADERS = ("x-request-id", "fireworks-request-id", "request-id")
MAX_REQUEST_ID = 128  # characters of a request ID header kept (in the ledger and the trail)
MAX_ERROR = 300  # characters of error text kept
# bytes of an answer's body read (a provider sending gigabytes cannot fill the memory): of a
# DELETE or GET (only MAX_ERROR characters of it are kept), and of a listing page or a probe
# (100 items with full metadata are about 4 MiB), after decompression
MAX_ANSWER_BODY = 64 * 1024
MAX_LISTING_BODY = 16 * 1024 * 1024
# where each kind of object lives, under the base URL
_PATHS: dict[str, str] = {
    ObjectKind.RESPONSE: "responses",
    ObjectKind.CONVERSATION: "conversations",
    ObjectKind.CHAT_COMPLETION: "chat/completions",
}
# answers to a listing's `after` that say the cursor is gone, not that the listing is
_CURSOR_REFUSED = frozenset({400, 404, 409, 410, 422})


@dataclass(frozen=True, slots=True)
class Page:
    """One page of GET /responses: raw items (validated by the caller), and the cursor."""

    items: list[Any]
    has_more: bool
    last_id: str | None

    @classmethod
    def from_json(cls, body: Any) -> Page:
        """Read a listing body leniently; a malformed body is a ProviderError."""
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderError("listing answered without a `data` list")
        last = body.get("last_id")
        if last is None and body["data"] and isinstance(body["data"][-1], dict):
            last = body["data"][-1].get("id")
        has_more = bool(body.get("has_more"))
        if has_more and last is not None and not is_valid_id(last):
            # saved, it would be sent back as `after` and refused by every crawl after this one
            raise ProviderError(
                f"listing answered a cursor that is not a response ID: {quote(last)}"
            )
        return cls(
            items=body["data"],
            has_more=has_more,
            last_id=last if isinstance(last, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """What the provider said (or that it could not be reached)."""

    status: int | None
    request_id: str | None = None
    retry_after: float | None = None
    error: str | None = None
    # no answer because the connection failed (refused, reset before any answer, DNS, TLS):
    # the provider's fault, not the ID's
    connection_failed: bool = False
    # a 2xx whose body says the object was not deleted (`{"deleted": false}`)
    refused: bool = False


class ProviderClient:
    """One provider account's HTTP client, shared by every request of a sweep."""

    def __init__(
        self,
        settings: ProviderSettings,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        register_secret(api_key)
        self.settings = settings
        headers = {
            **(
                {"api-key": api_key}  # Azure OpenAI's key header
                if settings.auth == "api-key"
                else {"Authorization": f"Bearer {api_key}"}
            ),
            "User-Agent": f"retention/{__version__}",
            # bodies are read as sent (aiohttp's default asked for gzip and never inflated it:
            # a compressing provider's probe answer was unreadable); the listing asks for gzip
            "Accept-Encoding": "identity",
        }
        if settings.kind == "fireworks" and settings.account_id:
            headers["x-fireworks-account-id"] = settings.account_id
        self._headers = httpx.Headers(headers)
        self._header_items = list(headers.items())
        self._timeout = httpx.Timeout(settings.timeout_s).as_dict()
        self._transport = transport or _default_transport(settings)
        # the listing (a few calls a crawl) goes through a full client; DELETE and GET go to
        # the transport directly, skipping per-request client work that a sweep pays 2,000
        # times a second
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=settings.timeout_s,
            transport=self._transport,
            follow_redirects=False,
            trust_env=False,
        )

    def url(self, response_id: str, kind: str = ObjectKind.RESPONSE) -> str:
        """The URL of one response (or conversation, or stored chat completion); the ID is
        validated here, at the last moment, again."""
        return f"{self.settings.base_url}/{_PATHS[kind]}/{validate_id(response_id)}"

    async def delete(self, response_id: str, kind: str = ObjectKind.RESPONSE) -> Answer:
        """DELETE one response (or stored chat completion). A 2xx whose body says
        `"deleted": false` is no deletion: the answer says so (`refused`), with the body as
        its error."""
        url = self.url(response_id, kind)
        answer, body = await self._exchange("DELETE", url, MAX_ANSWER_BODY)
        if answer.status is not None and 200 <= answer.status < 300 and _denies_deletion(body):
            text = body[:65536].decode("utf-8", "replace")
            return replace(
                answer,
                refused=True,
                error=scrub(f"HTTP {answer.status} but not deleted: {text}", MAX_ERROR),
            )
        return answer

    async def get(self, response_id: str, kind: str = ObjectKind.RESPONSE) -> Answer:
        """GET one response or stored chat completion (to confirm that it is gone)."""
        return await self._send("GET", self.url(response_id, kind))

    async def delete_conversation(self, conversation_id: str) -> Answer:
        """DELETE one conversation (its items stay: they are deleted first, one by one)."""
        answer, body = await self._exchange(
            "DELETE", self.url(conversation_id, ObjectKind.CONVERSATION), MAX_ANSWER_BODY
        )
        if answer.status is not None and 200 <= answer.status < 300 and _denies_deletion(body):
            return replace(answer, refused=True, error=f"HTTP {answer.status} but not deleted")
        return answer

    async def conversation_items(
        self, conversation_id: str, limit: int = 100
    ) -> tuple[Answer, list[str]]:
        """The first page of a conversation's items: the answer, and the item IDs it listed
        (none unless 2xx). Always from the start: the caller deletes what a page lists, and
        some servers ignore `after`."""
        url = f"{self.url(conversation_id, ObjectKind.CONVERSATION)}/items?limit={limit}&order=asc"
        answer, body = await self._exchange("GET", url)
        if answer.status is None or not 200 <= answer.status < 300:
            return answer, []
        try:
            data = json.loads(body).get("data")
        except (ValueError, RecursionError, AttributeError):
            data = None
        if not isinstance(data, list):
            return replace(answer, status=None, error="item listing without a `data` list"), []
        ids = [item.get("id") for item in data if isinstance(item, dict)]
        valid = [i for i in ids if isinstance(i, str) and is_valid_id(i)]
        if len(valid) != len(data):
            return replace(answer, status=None, error="item listing with an invalid item ID"), []
        return answer, valid

    async def delete_conversation_item(self, conversation_id: str, item_id: str) -> Answer:
        """DELETE one item of a conversation."""
        url = f"{self.url(conversation_id, ObjectKind.CONVERSATION)}/items/{validate_id(item_id)}"
        return await self._send("DELETE", url)

    async def fetch(self, path: str) -> tuple[Answer, bytes]:
        """GET `base_url` + `path` (a fixed path of ours, never an ID): the answer and its body,
        for the probe."""
        return await self._exchange("GET", f"{self.settings.base_url}{path}")

    async def _send(self, method: str, url: str) -> Answer:
        """Send one request and describe the answer."""
        return (await self._exchange(method, url, MAX_ANSWER_BODY))[0]

    async def _exchange(
        self, method: str, url: str, limit: int = MAX_LISTING_BODY
    ) -> tuple[Answer, bytes]:
        """Send one request: the answer described, and its body as sent (not decompressed),
        cut after `limit` + 1 bytes."""
        if isinstance(self._transport, AiohttpTransport):  # the sweep's hot path
            try:
                status, headers, body = await self._transport.exchange(
                    method, url, self._header_items, limit=limit
                )
            except httpx.HTTPError as exc:
                return _unanswered(exc, before_answer=False), b""
            return answer_of(status, headers, body, utcnow()), body
        request = httpx.Request(
            method, url, headers=self._headers, extensions={"timeout": self._timeout}
        )
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            return _unanswered(exc, before_answer=True), b""
        try:
            content = await _read_raw(response, limit)
        except httpx.HTTPError as exc:  # the status arrived, the body did not
            answer = answer_of(
                response.status_code,
                response.headers,
                b"",
                utcnow(),
                body_error=_describe_error(exc),
            )
            return answer, b""
        finally:
            await response.aclose()
        return answer_of(response.status_code, response.headers, content, utcnow()), content

    async def list_page(
        self, *, limit: int = 100, after: str | None = None, kind: str = ObjectKind.RESPONSE
    ) -> Page:
        """One page of the provider's listing of stored responses (or chat completions),
        newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if kind != ObjectKind.RESPONSE:
            params["order"] = "desc"  # chat completions list oldest first unless asked
        if after is not None:
            params["after"] = validate_id(after)
        url = f"{self.settings.base_url}/{_PATHS[kind]}"
        try:  # gzip alone: decompressed here, with a bound (httpx's decoders have none)
            async with self._http.stream(
                "GET", url, params=params, headers={"Accept-Encoding": "gzip"}
            ) as response:
                raw = await _read_raw(response, MAX_LISTING_BODY)
        except httpx.TransportError as exc:
            raise ProviderError(f"listing failed: {_describe_error(exc)}") from None
        if response.status_code in (401, 403):
            raise ProviderAuthError(
                f"provider {self.settings.name} refused our credentials "
                f"(HTTP {response.status_code})"
            )
        if after is not None and response.status_code in _CURSOR_REFUSED:
            # Llama Stack answers 400 to `after` naming a deleted response: walk from the top
            raise CursorRefused(
                f"provider {self.settings.name} refused the listing's cursor "
                f"(HTTP {response.status_code})"
            )
        if response.status_code in (404, 405, 501):
            raise DiscoveryUnsupported(
                f"provider {self.settings.name} ({self.settings.kind}) has no listing of "
                f"stored {_PATHS[kind].replace('/', ' ')} (GET /{_PATHS[kind]} answered "
                f"{response.status_code}); record IDs where they are created "
                "(retention.capture, ingest, record, import)"
            )
        if not response.is_success:
            raise ProviderError(f"listing failed: HTTP {response.status_code}")
        content = _decoded(raw, response.headers.get("content-encoding", ""), MAX_LISTING_BODY)
        try:
            body = redact_tree(json.loads(content))
        except (ValueError, RecursionError):
            raise ProviderError("listing answered with something that is not JSON") from None
        return Page.from_json(body)

    async def aclose(self) -> None:
        """Close connections."""
        await self._http.aclose()


async def _read_raw(response: httpx.Response, limit: int) -> bytes:
    """A streamed answer's body as sent, at most `limit` + 1 bytes of it (more is never
    read: a provider sending gigabytes cannot fill the memory)."""
    if response.is_stream_consumed:  # read by the transport already (httpx.MockTransport)
        return response.content[: limit + 1]
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


def _decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """A listing's body decompressed, at most `limit` bytes of it; ProviderError when it is
    longer (a page that large, or a compression bomb) or in an encoding we did not ask for."""
    too_large = ProviderError(f"listing answered a page larger than {limit // 1024 // 1024} MiB")
    encoding = encoding.strip().lower()
    if len(raw) > limit:
        raise too_large
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            raw = zlib.decompressobj(wbits=47).decompress(raw, limit + 1)  # gzip or zlib
        except zlib.error:
            raise ProviderError(f"listing answered a body that is not valid {encoding}") from None
    elif encoding not in ("", "identity"):
        raise ProviderError(f"listing answered in an encoding not asked for: {quote(encoding)}")
    if len(raw) > limit:
        raise too_large
    return raw


def _default_transport(settings: ProviderSettings) -> httpx.AsyncBaseTransport:
    """aiohttp's pool by default; httpx's own (TLS verified) when configured."""
    if settings.transport == "aiohttp":
        return AiohttpTransport(
            max_connections=settings.max_concurrency,
            timeout_s=settings.timeout_s,
            max_body=MAX_LISTING_BODY,
        )
    limits = httpx.Limits(
        max_connections=settings.max_concurrency, max_keepalive_connections=settings.max_concurrency
    )
    return httpx.AsyncHTTPTransport(limits=limits, verify=True, trust_env=False)


# errors that mean no answer came because the connection failed: refused, DNS, TLS (all
# ConnectError), a connect timeout, the server closing before any answer, a reset while sending
_CONNECTION_FAILURES = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.RemoteProtocolError,
    httpx.WriteError,
)


def _unanswered(exc: httpx.HTTPError, *, before_answer: bool) -> Answer:
    """The Answer of a request that got no status; `before_answer` when no byte of an answer
    can have arrived (httpx's transport raises before the head, aiohttp's after the body)."""
    connection = isinstance(exc, _CONNECTION_FAILURES) or type(exc) is httpx.NetworkError
    if before_answer and isinstance(exc, httpx.ReadError):
        connection = True  # reset while waiting for the head
    return Answer(status=None, error=_describe_error(exc), connection_failed=connection)


def _describe_error(exc: Exception) -> str:
    """A transport error as text, secrets removed before it is shortened."""
    return scrub(f"{type(exc).__name__}: {exc}", MAX_ERROR) or ""


def _denies_deletion(body: bytes) -> bool:
    """Whether a DELETE's body says the object was not deleted (`{"deleted": false}`)."""
    if b'"deleted"' not in body:
        return False
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("deleted") is False


def answer_of(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    body_error: str | None = None,
) -> Answer:
    """An Answer: status, request ID, Retry-After, and error text, each scrubbed (controls
    removed, secrets redacted, then cut)."""
    request_id = next((headers[h] for h in REQUEST_ID_HEADERS if h in headers), None)
    error = body_error
    if error is None and not 200 <= status < 300 and status != 404:
        text = body[:65536].decode("utf-8", "replace")
        error = scrub(f"HTTP {status}: {text}", MAX_ERROR)
    return Answer(
        status=status,
        request_id=scrub(request_id, MAX_REQUEST_ID) or None,
        retry_after=parse_retry_after(headers.get("retry-after"), now),
        error=error,
    )
