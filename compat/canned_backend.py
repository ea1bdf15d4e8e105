"""A canned OpenAI-compatible upstream and a token-to-principal auth endpoint, on loopback.

Run as ``python compat/canned_backend.py [--port 0] [--tokens FILE]``: it prints one line,
``READY http://127.0.0.1:PORT``, once it listens. Llama Stack uses it twice: as its inference
provider (``/v1/chat/completions``, ``/v1/models``) and as its ``custom`` auth provider
(``POST /auth``: ``{"api_key": ...}`` answers ``{"principal": ...}`` or 401).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from typing import Any

from aiohttp import web

MODEL = "canned-model"
REPLY = "This is the canned reply."
USAGE = {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}

TOKENS: web.AppKey[dict[str, str]] = web.AppKey("tokens", dict)
LOG: web.AppKey[list[dict[str, Any]]] = web.AppKey("log", list)


def _chunk(cid: str, created: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    """One chat.completion.chunk with a single choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """Answer a chat completion with the canned reply, streamed or not."""
    body = await request.json()
    request.app[LOG].append({"path": request.path, "body": body})
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    model = body.get("model") or MODEL
    if not body.get("stream"):
        return web.json_response(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": REPLY},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": USAGE,
            }
        )
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunks = [
        _chunk(cid, created, {"role": "assistant", "content": ""}, None),
        _chunk(cid, created, {"content": REPLY[:7]}, None),
        _chunk(cid, created, {"content": REPLY[7:]}, None),
        _chunk(cid, created, {}, "stop"),
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**_chunk(cid, created, {}, None), "choices": [], "usage": USAGE})
    for chunk in chunks:
        await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def models(request: web.Request) -> web.Response:
    """List the one canned model."""
    request.app[LOG].append({"path": request.path})
    model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "canned"}
    return web.json_response({"object": "list", "data": [model]})


async def auth(request: web.Request) -> web.Response:
    """Map the bearer token Llama Stack forwards to a principal, or refuse it."""
    body = await request.json()
    principal = request.app[TOKENS].get(body.get("api_key", ""))
    if principal is None:
        return web.json_response({"message": "unknown key"}, status=401)
    return web.json_response({"principal": principal, "attributes": {"roles": [principal]}})


async def requests_seen(request: web.Request) -> web.Response:
    """Return what the backend was asked so far (auth calls excluded)."""
    return web.json_response(request.app[LOG])


async def fallback(request: web.Request) -> web.Response:
    """Log and 404 anything else, so unexpected upstream calls are visible."""
    request.app[LOG].append({"path": request.path, "method": request.method, "unknown": True})
    print(f"canned backend: unexpected {request.method} {request.path}", file=sys.stderr)
    return web.json_response({"error": {"message": "not canned"}}, status=404)


def make_app(tokens: dict[str, str]) -> web.Application:
    """Build the aiohttp application."""
    app = web.Application()
    app[TOKENS] = tokens
    app[LOG] = []
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/auth", auth)
    app.router.add_get("/_canned/requests", requests_seen)
    app.router.add_route("*", "/{tail:.*}", fallback)
    return app


async def _serve(port: int, tokens: dict[str, str]) -> None:
    """Listen on 127.0.0.1, announce the bound port on stdout, stop on SIGINT/SIGTERM."""
    runner = web.AppRunner(make_app(tokens), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"READY http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", help="JSON file mapping bearer tokens to principals")
    args = parser.parse_args()
    tokens: dict[str, str] = {}
    if args.tokens:
        with open(args.tokens, encoding="utf-8") as fh:
            tokens = json.load(fh)
    asyncio.run(_serve(args.port, tokens))


if __name__ == "__main__":
    main()
