"""The stand-in HTTP server (aiohttp): the provider API on loopback, with fault knobs.

Provider routes under `/v1`: POST/GET `/responses`, GET/DELETE `/responses/{id}`, GET `/models`,
and the Conversations API (standin/conversations.py): POST `/conversations`, GET/DELETE
`/conversations/{id}`, GET `/conversations/{id}/items`, GET/DELETE
`/conversations/{id}/items/{item_id}`. A response made with `conversation` adds its turn there.
Chat Completions (standin/chat_completions.py): POST/GET `/chat/completions`, GET/DELETE
`/chat/completions/{id}`, stored as the flavour stores them.
Control routes under `/_standin` (no auth): `requests`, `seed`, `knobs`, `conversations`,
`chat_completions`.
The stand-in plays one provider's ways at a time (knob `flavor`, standin/flavours.py): error
bodies, delete bodies, ID forms, listing limits, Azure's `api-key` header and `/openai/v1` path.
A second key, `blind_key`, is accepted but sees nothing (like a key of another OpenAI project):
its listing is empty and every ID answers 404. With `echo_key` it plays a careless provider that
echoes the Authorization header it received: in `x-request-id`, raw in a 401's text body,
JSON-escaped in every other error body and in each listed response's metadata.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import secrets
import threading
from collections.abc import Awaitable, Callable, Container
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from retention.standin.chat_completions import ChatCompletionStore, chunks_of, completion_of
from retention.standin.conversations import ConversationStore
from retention.standin.flavours import FLAVOURS, Flavour
from retention.standin.stored import ResponseStore, Seen


@dataclass
class Knobs:
    """Fault and latency settings, changeable while running."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # fraction answered 500
    rate_429: float = 0.0  # fraction answered 429 with Retry-After
    retry_after: int = 1
    drop_rate: float = 0.0  # fraction whose connection is closed without an answer
    flavor: str = "fireworks"  # the provider it plays: a name in standin/flavours.py
    deny_delete_rate: float = 0.0  # fraction of DELETEs answered 401 (a key that may only read)
    # fraction of DELETEs answered 200 `{"deleted": false}`, the response kept (a server that
    # says no in its body)
    keep_on_delete_rate: float = 0.0

    def update(self, values: dict[str, Any]) -> None:
        """Change the named knobs."""
        names = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise KeyError(key)
            if key == "flavor" and value not in FLAVOURS:
                raise ValueError(f"flavor: expected one of {', '.join(FLAVOURS)}")
            setattr(self, key, value if key == "flavor" else float(value))


Handler = Callable[["StandIn", web.Request], Awaitable[web.StreamResponse]]


def _gated(handler: Handler) -> Handler:
    """A provider route behind the stand-in's gate (latency, faults and auth, `_gate`)."""

    @functools.wraps(handler)
    async def gated(self: StandIn, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request)
        return refused if refused is not None else await handler(self, request)

    return gated


class StandIn:
    """A running stand-in; `start()` serves it from a background thread on 127.0.0.1."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        account: str | None = None,
        knobs: Knobs | None = None,
        seed: int | None = None,
        blind_key: str | None = None,
        echo_key: bool = False,
    ) -> None:
        self.api_key, self.account, self.blind_key = api_key, account, blind_key
        self.echo_key = echo_key
        self.knobs = knobs or Knobs()
        self.store = ResponseStore()
        self.conversations = ConversationStore()
        self.chats = ChatCompletionStore()
        self._random = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def flavour(self) -> Flavour:
        """The provider it plays now."""
        return FLAVOURS[self.knobs.flavor]

    @property
    def base_url(self) -> str:
        """The base URL to put in a provider's `base_url`."""
        return f"http://127.0.0.1:{self.port}{self.flavour.path}"

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(client_max_size=1024 * 1024)
        for base in sorted({f.path for f in FLAVOURS.values()}):  # /v1, and Azure's
            app.router.add_post(f"{base}/responses", self._create)
            app.router.add_get(f"{base}/responses", self._list)
            app.router.add_get(f"{base}/responses/{{id}}", self._get)
            app.router.add_delete(f"{base}/responses/{{id}}", self._delete)
            app.router.add_get(f"{base}/models", self._models)
            app.router.add_post(f"{base}/conversations", self._create_conversation)
            app.router.add_get(f"{base}/conversations/{{id}}", self._get_conversation)
            app.router.add_delete(f"{base}/conversations/{{id}}", self._delete_conversation)
            app.router.add_get(f"{base}/conversations/{{id}}/items", self._list_items)
            app.router.add_get(f"{base}/conversations/{{id}}/items/{{item}}", self._get_item)
            app.router.add_delete(f"{base}/conversations/{{id}}/items/{{item}}", self._delete_item)
            app.router.add_post(f"{base}/chat/completions", self._create_chat)
            app.router.add_get(f"{base}/chat/completions", self._list_chats)
            app.router.add_get(f"{base}/chat/completions/{{id}}", self._get_chat)
            app.router.add_delete(f"{base}/chat/completions/{{id}}", self._delete_chat)
        app.router.add_get("/_standin/conversations", self._census)
        app.router.add_get("/_standin/chat_completions", self._chat_census)
        app.router.add_get("/_standin/requests", self._requests)
        app.router.add_post("/_standin/seed", self._seed)
        app.router.add_post("/_standin/knobs", self._set_knobs)
        return app

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on the running loop."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> StandIn:
        """Serve from a daemon thread; returns once the port is bound."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop the background server."""
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _gate(self, request: web.Request) -> web.StreamResponse | None:
        """Latency, faults and auth, in that order; None lets the request through."""
        knobs, roll = self.knobs, self._random.random()
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000)
        if roll < knobs.drop_rate:
            request.transport.abort()  # type: ignore[union-attr]
            raise asyncio.CancelledError
        roll -= knobs.drop_rate
        if roll < knobs.rate_429:
            return self._answer(
                request,
                429,
                {"error": {"message": "rate limited"}},
                headers={"Retry-After": str(int(knobs.retry_after))},
            )
        roll -= knobs.rate_429
        if roll < knobs.error_rate:
            return self._answer(request, 500, {"error": {"message": "stand-in fault"}})
        if self._key(request) != self.api_key and not self._blind(request):
            return self._answer(request, 401, {"error": {"message": "invalid API key"}})
        if self.account and request.headers.get("x-fireworks-account-id") != self.account:
            return self._answer(request, 403, {"error": {"message": "wrong account"}})
        return None

    def _key(self, request: web.Request) -> str | None:
        """The key the request carries where this flavour takes it (`api-key` on Azure)."""
        if self.flavour.auth == "api-key":
            return request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "")
        return bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None

    def _blind(self, request: web.Request) -> bool:
        """Whether the request carries the key that is accepted but sees nothing."""
        return bool(self.blind_key) and self._key(request) == self.blind_key

    def _not_found(self, request: web.Request) -> web.Response:
        """404, as a provider says it has no such object."""
        return self._answer(request, 404, {"error": {"message": "not found"}})

    def _answer(
        self,
        request: web.Request,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """Answer and remember it."""
        self.store.note(
            Seen(
                request.method, request.path, request.headers.get("x-fireworks-account-id"), status
            )
        )
        if self.echo_key:
            return _echoing(request, status, body, headers or {})
        flavour = self.flavour
        error = body.get("error")
        detail = flavour.error_shape == "detail" and status != 401
        if status >= 400 and detail and isinstance(error, dict):
            body = {"detail": error.get("message")}  # FastAPI's shape (Llama Stack)
        if flavour.request_ids:
            headers = {**(headers or {}), "x-request-id": f"req_{secrets.token_hex(16)}"}
        return web.json_response(body, status=status, headers=headers)

    @_gated
    async def _create(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/responses; `"stream": true` answers with server-sent events."""
        body = await request.json()
        conversation = body.get("conversation")
        if isinstance(conversation, dict):
            conversation = conversation.get("id")
        if conversation is not None and self.conversations.live(str(conversation)) is None:
            return self._answer(request, 404, {"error": {"message": "no such conversation"}})
        item = self.store.create({"id": self.flavour.response_id(), **body})
        if conversation is not None:
            self.conversations.add_turn(str(conversation), body.get("input"), "stand-in")
            item["conversation"] = {"id": conversation}
        elif self.flavour.null_conversation:
            item["conversation"] = None
        if not body.get("stream"):
            return self._answer(request, 200, item)
        self.store.note(
            Seen(request.method, request.path, request.headers.get("x-fireworks-account-id"), 200)
        )
        return await _stream(request, item)

    @_gated
    async def _list(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/responses?limit=&after=, newest first."""
        if not self.flavour.lists_responses:  # like OpenAI's API: no listing of stored responses
            return self._not_found(request)
        paging = self._paging(request, self.store.responses, "Response")
        if isinstance(paging, web.Response):
            return paging
        page = self.store.page(*paging)
        if self.echo_key:
            echo = request.headers.get("Authorization", "")
            page["data"] = [
                {**item, "metadata": {**item["metadata"], "echo": echo}} for item in page["data"]
            ]
        return self._answer(request, 200, page)

    def _paging(
        self, request: web.Request, known: Container[str], what: str
    ) -> tuple[int, str | None] | web.Response:
        """A listing's `limit` and `after`, or the answer that ends it: a bad limit (or one
        above 100, where the flavour refuses it), an empty page for the key that sees nothing,
        a 400 for an `after` naming nothing in `known` where the flavour refuses one (Llama
        Stack's words: "`what` with id ... not found")."""
        limit = self._limit(request)
        if isinstance(limit, web.Response):
            return limit
        if self._blind(request):
            return self._answer(request, 200, {"object": "list", "data": [], "has_more": False})
        after = request.query.get("after")
        if after and self.flavour.unknown_after == "refuse" and after not in known:
            message = f"{what} with id {after} not found"
            return self._answer(request, 400, {"error": {"message": message}})
        return limit, after

    def _limit(self, request: web.Request) -> int | web.Response:
        """A listing's `limit` (20 when absent), capped at 100 or refused above it."""
        try:
            limit = max(1, int(request.query.get("limit", "20")))
        except ValueError:
            return self._answer(request, 400, {"error": {"message": "bad limit"}})
        if limit > 100 and self.flavour.limit_over_100 == "refuse":
            return self._answer(request, 400, {"error": {"message": "limit must be <= 100"}})
        return min(limit, 100)

    @_gated
    async def _models(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models: what every OpenAI-compatible server lists."""
        model = {"id": "accounts/fireworks/models/llama-v3p1-8b-instruct", "object": "model"}
        listed: dict[str, Any] = {"data": [model]}
        if self.flavour.models_list_object:
            listed = {"object": "list", **listed}
        return self._answer(request, 200, listed)

    @_gated
    async def _get(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/responses/{id}."""
        item = None if self._blind(request) else self.store.responses.get(request.match_info["id"])
        if item is None:
            return self._not_found(request)
        return self._answer(request, 200, item)

    @_gated
    async def _delete(self, request: web.Request) -> web.StreamResponse:
        """DELETE /v1/responses/{id}."""
        rid = request.match_info["id"]
        denied = self.knobs.deny_delete_rate  # drawn only when set: seeded faults stay as they were
        if denied and self._random.random() < denied:
            return self._answer(request, 401, {"error": {"message": "this key may not delete"}})
        kept = self.knobs.keep_on_delete_rate
        if kept and rid in self.store.responses and self._random.random() < kept:
            return self._answer(request, 200, {"id": rid, "object": "response", "deleted": False})
        if self._blind(request) or self.store.responses.pop(rid, None) is None:
            return self._not_found(request)
        body: dict[str, Any] = (
            {"message": "Response deleted successfully"}
            if self.flavour.delete_body == "message"
            else {"id": rid, "object": "response", "deleted": True}
        )
        return self._answer(request, 200, body)

    @_gated
    async def _create_conversation(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/conversations {metadata, items}."""
        body = await request.json()
        made = {"id": self.flavour.conversation_id(), **(body or {})}
        return self._answer(request, 200, self.conversations.create(made))

    @_gated
    async def _get_conversation(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/conversations/{id}."""
        found = None if self._blind(request) else self.conversations.live(request.match_info["id"])
        if found is None:
            return self._not_found(request)
        return self._answer(request, 200, found.body)

    @_gated
    async def _delete_conversation(self, request: web.Request) -> web.StreamResponse:
        """DELETE /v1/conversations/{id}: the conversation goes, its items stay."""
        found = None if self._blind(request) else self.conversations.live(request.match_info["id"])
        if found is None:
            return self._not_found(request)
        self.conversations.delete(found.body["id"])
        gone = {
            "id": found.body["id"],
            "object": f"{found.body['object']}.deleted",
            "deleted": True,
        }
        return self._answer(request, 200, gone)

    @_gated
    async def _list_items(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/conversations/{id}/items?limit=&after=&order=."""
        limit = self._limit(request)
        if isinstance(limit, web.Response):
            return limit
        follows = self.flavour.items_follow_after
        page = None
        if not self._blind(request):
            page = self.conversations.page(
                request.match_info["id"],
                limit,
                request.query.get("after") if follows else None,
                request.query.get("order", "desc"),
            )
        if page is None:
            return self._not_found(request)
        if not follows:  # Llama Stack: cut at `limit`, never more to come
            page["has_more"] = False
        return self._answer(request, 200, page)

    @_gated
    async def _get_item(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/conversations/{id}/items/{item}: reachable until the item is deleted."""
        found = self.conversations.conversations.get(request.match_info["id"])
        item = None if found is None else found.items.get(request.match_info["item"])
        if item is None or self._blind(request):
            return self._not_found(request)
        return self._answer(request, 200, item)

    @_gated
    async def _delete_item(self, request: web.Request) -> web.StreamResponse:
        """DELETE /v1/conversations/{id}/items/{item}: the conversation's object back."""
        body = None
        if not self._blind(request):
            body = self.conversations.delete_item(
                request.match_info["id"], request.match_info["item"]
            )
        if body is None:
            return self._not_found(request)
        return self._answer(request, 200, body)

    @_gated
    async def _create_chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions: stored as the flavour stores them; `"stream": true`
        answers with chunks, then `[DONE]`."""
        body = await request.json()
        completion = completion_of(body)
        kept = self.flavour.chat_completions
        if kept == "keep" or (kept == "delete" and body.get("store") is True):
            self.chats.keep(completion, body)
        if not body.get("stream"):
            return self._answer(request, 200, completion)
        self.store.note(Seen(request.method, request.path, None, 200))
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        for chunk in chunks_of(completion):
            await answer.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await answer.write(b"data: [DONE]\n\n")
        await answer.write_eof()
        return answer

    @_gated
    async def _list_chats(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/chat/completions?limit=&after=&order=&metadata[KEY]=VALUE."""
        if self.flavour.chat_completions == "none":
            return self._not_found(request)
        paging = self._paging(request, self.chats.completions, "Chat completion")
        if isinstance(paging, web.Response):
            return paging
        limit, after = paging
        metadata = {
            key[len("metadata[") : -1]: value
            for key, value in request.query.items()
            if key.startswith("metadata[") and key.endswith("]")
        }
        order = request.query.get("order", "asc")
        return self._answer(request, 200, self.chats.page(limit, after, order, metadata))

    @_gated
    async def _get_chat(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/chat/completions/{id}."""
        found = self.chats.completions.get(request.match_info["id"])
        if found is not None and self._blind(request):  # another principal's
            status = self.flavour.foreign_chat_status
            return self._answer(request, status, {"error": {"message": "not found"}})
        if found is None or self.flavour.chat_completions == "none":
            return self._not_found(request)
        return self._answer(request, 200, found)

    @_gated
    async def _delete_chat(self, request: web.Request) -> web.StreamResponse:
        """DELETE /v1/chat/completions/{id}: gone, or 405 where the flavour cannot delete."""
        cid, kept = request.match_info["id"], self.flavour.chat_completions
        if kept == "keep":
            return self._answer(request, 405, {"error": {"message": "Method Not Allowed"}})
        if kept == "none" or self._blind(request) or self.chats.completions.pop(cid, None) is None:
            return self._not_found(request)
        gone = {"id": cid, "object": "chat.completion.deleted", "deleted": True}
        return self._answer(request, 200, gone)

    async def _census(self, request: web.Request) -> web.Response:
        """GET /_standin/conversations: each conversation's items left, and if deleted."""
        return web.json_response({"conversations": self.conversations.census()})

    async def _chat_census(self, request: web.Request) -> web.Response:
        """GET /_standin/chat_completions: the IDs of the chat completions stored."""
        return web.json_response({"ids": sorted(self.chats.completions)})

    async def _requests(self, request: web.Request) -> web.Response:
        """GET /_standin/requests: every request answered so far."""
        return web.json_response(
            {"requests": [asdict(s) for s in self.store.seen], "counts": dict(self.store.counts)}
        )

    async def _seed(self, request: web.Request) -> web.Response:
        """POST /_standin/seed {"responses": [{id, created_at, model, metadata}...]}."""
        body = await request.json()
        made = [self.store.create(item)["id"] for item in body.get("responses", [])]
        return web.json_response({"created": made})

    async def _set_knobs(self, request: web.Request) -> web.Response:
        """POST /_standin/knobs {"latency_ms": 50, ...}."""
        try:
            self.knobs.update(await request.json())
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"bad knob: {exc}"}, status=400)
        return web.json_response(asdict(self.knobs))


def _echoing(
    request: web.Request, status: int, body: dict[str, Any], headers: dict[str, str]
) -> web.Response:
    """A careless provider's answer: the Authorization header received, in `x-request-id`, raw
    in a 401's text body, JSON-escaped in any other error's message."""
    received = request.headers.get("Authorization", "")
    headers = {**headers, "x-request-id": f"req_standin {received}"}
    if status == 401:
        return web.Response(status=401, text=f"invalid API key: {received}", headers=headers)
    error = body.get("error")
    if status >= 400 and isinstance(error, dict):
        body = {**body, "error": {**error, "message": f"{error.get('message')}: {received}"}}
    return web.json_response(body, status=status, headers=headers)


async def _stream(request: web.Request, item: dict[str, Any]) -> web.StreamResponse:
    """The Responses API's event stream: created, one text delta, completed."""
    answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await answer.prepare(request)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**item, "status": "in_progress", "output": []}},
        {
            "type": "response.output_text.delta",
            "item_id": "msg_standin",
            "output_index": 0,
            "content_index": 0,
            "delta": "stand-in",
            "logprobs": [],
        },
        {"type": "response.completed", "response": item},
    ]
    for number, event in enumerate(events):
        data = json.dumps({**event, "sequence_number": number})
        await answer.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    await answer.write_eof()
    return answer
