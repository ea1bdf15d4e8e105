"""The daemon's legal-hold routes: `POST /v1/holds`, `DELETE /v1/holds/{name}`, `GET /v1/holds`.

The ingest token's, like erasure requests, and writes pass the same gate (a few at a time, none
once the daemon stops). A hold placed or lifted here is adopted by this daemon at once; one
placed or lifted by another process, at its next sweep (services/holds.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from retention.core.quoting import quote
from retention.core.record_input import json_error, loads
from retention.daemon.http import (
    _daemon,
    _error,
    _refuse_unauthorized,
    in_write_slot,
    write_body,
)
from retention.errors import ConflictError, InputError, NotFoundError, RetentionError
from retention.ledger.loopguard import off_loop
from retention.services.holds import checked_hold, lift_hold, list_holds, place_hold

if TYPE_CHECKING:
    from retention.daemon.service import Daemon

MAX_HOLD_BODY = 1024 * 1024  # bytes: 10,000 IDs of a typical length fit
MAX_LIFT_BODY = 16 * 1024
HOLD_FIELDS = ("ids", "match", "reason", "ticket", "until", "name")
LIFT_FIELDS = ("reason",)


def add_hold_routes(app: web.Application) -> None:
    """Route the hold requests of `app`."""
    app.router.add_post("/v1/holds", place)
    app.router.add_get("/v1/holds", listing)
    app.router.add_delete("/v1/holds/{name}", lift)


def _actor(request: web.Request) -> str:
    """Who asked: `http:` and the peer's address."""
    return f"http:{request.remote or 'unknown'}"


async def place(request: web.Request) -> web.Response:
    """POST /v1/holds: place a hold; 201 with the hold and what it covered."""
    daemon = _daemon(request)
    data = await write_body(
        request,
        MAX_HOLD_BODY,
        f"the body is over {MAX_HOLD_BODY // 1024} KiB; a match selects more",
    )
    if isinstance(data, web.Response):
        return data
    return await in_write_slot(daemon, lambda: _place(data, daemon, _actor(request)))


async def _place(data: bytes, daemon: Daemon, actor: str) -> web.Response:
    """Check and place one hold."""
    body = _fields(data, HOLD_FIELDS, required=True)
    if isinstance(body, web.Response):
        return body
    try:
        wanted = checked_hold(daemon.settings, **body, now=daemon.clock())
    except InputError as exc:  # names the field; never a data subject's value
        return _error(400, exc.message)
    try:
        await off_loop(daemon.follow_ledger_policies)
        placed = await off_loop(place_hold, daemon.ledger, daemon.policies, wanted, actor=actor)
        await off_loop(daemon.follow_ledger_policies)  # this daemon holds them from now
    except ConflictError as exc:  # the name is taken, or the policies moved meanwhile
        return _error(409, exc.message)
    except RetentionError as exc:  # the ledger is away, or the erasure key cannot be read
        return _error(503, exc.message)
    return web.json_response(placed, status=201)


async def lift(request: web.Request) -> web.Response:
    """DELETE /v1/holds/{name}: lift a hold placed in the ledger, with a `reason` (in the
    query, or a JSON body); 200 with the hold and what it released."""
    daemon = _daemon(request)
    data = await write_body(request, MAX_LIFT_BODY, f"the body is over {MAX_LIFT_BODY // 1024} KiB")
    if isinstance(data, web.Response):
        return data
    body = _fields(data, LIFT_FIELDS, required=False) if data.strip() else {}
    if isinstance(body, web.Response):
        return body
    unknown = sorted(k for k in request.query if k not in LIFT_FIELDS)
    if unknown:
        return _error(400, f"unknown parameter {quote(unknown[0])} (expected: reason)")
    reason = body.get("reason", request.query.get("reason"))
    name = request.match_info["name"]
    return await in_write_slot(daemon, lambda: _lift(daemon, name, reason, _actor(request)))


async def _lift(daemon: Daemon, name: str, reason: Any, actor: str) -> web.Response:
    """Lift one hold; sweep at once when records it released are due."""
    try:
        await off_loop(daemon.follow_ledger_policies)
        lifted = await off_loop(
            lift_hold, daemon.ledger, daemon.policies, name, reason=reason, actor=actor
        )
        await off_loop(daemon.follow_ledger_policies)
    except InputError as exc:
        return _error(400, exc.message)
    except NotFoundError as exc:
        return _error(404, exc.message)
    except ConflictError as exc:  # listed in the policies file, or lifted already
        return _error(409, exc.message)
    except RetentionError as exc:
        return _error(503, exc.message)
    if lifted["due_now"]:
        daemon.sweep_now()
    return web.json_response(lifted)


async def listing(request: web.Request) -> web.Response:
    """GET /v1/holds: the holds in force (`?all=true`: the lifted ones too)."""
    daemon = _daemon(request)
    refused = _refuse_unauthorized(request)
    if refused is not None:
        return refused
    every = request.query.get("all", "false").lower()
    if every not in ("true", "false", "1", "0"):
        return _error(400, "all: expected true or false")
    try:
        items = await off_loop(
            list_holds, daemon.ledger, daemon.policies, lifted=every in ("true", "1")
        )
    except RetentionError as exc:
        return _error(503, exc.message)
    return web.json_response({"holds": items})


def _fields(
    data: bytes, allowed: tuple[str, ...], *, required: bool
) -> dict[str, Any] | web.Response:
    """The body as an object of `allowed` fields, or the 400 that refuses it."""
    try:
        body = loads(data)
    except (ValueError, RecursionError) as exc:
        return _error(400, f"the body is not JSON: {json_error(exc)}")
    if not isinstance(body, dict):
        shape = (
            '{"ids": [...], "match": {...}, "reason": "..."}' if required else '{"reason": "..."}'
        )
        return _error(400, f"expected {shape}")
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        return _error(400, f"unknown field {quote(unknown[0])} (expected: {', '.join(allowed)})")
    return body
