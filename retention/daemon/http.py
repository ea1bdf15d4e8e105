"""The daemon's HTTP surface (aiohttp): health, readiness, metrics, record ingest, deletion
receipts, erasure requests and legal holds (daemon/hold_routes.py)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from retention.audit.receipt_format import receipt_text
from retention.core.quoting import quote
from retention.core.record_input import NewRecord, json_error, loads, validate_rows
from retention.daemon.write_gate import GateClosedError
from retention.errors import InputError, InvalidIdError, RetentionError, UsageError
from retention.evidence.receipts import issue_receipt
from retention.ledger.db import require_current
from retention.ledger.loopguard import off_loop
from retention.logs import get_logger, register_secret
from retention.services.erasure import checked_request, erasure_status, request_erasure

if TYPE_CHECKING:
    from retention.daemon.service import Daemon

MAX_BODY = 1024 * 1024  # bytes; larger bodies get 413 before they are read
MAX_ITEMS = 10_000
MAX_ERASURE_BODY = 64 * 1024  # bytes: one subject's request is a few hundred
ERASURE_FIELDS = ("subject", "reason", "ticket", "dry_run")
DAEMON: web.AppKey[Any] = web.AppKey("daemon")
log = get_logger("retention.http")


def make_app(daemon: Daemon) -> web.Application:
    """The application; `daemon` answers for liveness, the ledger and the policies."""
    app = web.Application(client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/records", ingest)
    app.router.add_get("/v1/receipts/{id}", receipt)
    app.router.add_post("/v1/erasures", erase)
    app.router.add_get("/v1/erasures/{id}", erasure)
    from retention.daemon.hold_routes import add_hold_routes  # its handlers use this module's

    add_hold_routes(app)
    return app


def _daemon(request: web.Request) -> Daemon:
    """The daemon behind this app."""
    return request.app[DAEMON]  # type: ignore[no-any-return]


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and the scheduler runs."""
    alive = _daemon(request).alive()
    return web.json_response(
        {"status": "ok" if alive else "scheduler stopped"}, status=200 if alive else 503
    )


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and its schema is current, and no provider failed its
    last probe (each one failing is named with its reason)."""
    daemon = _daemon(request)
    if daemon.stopping or not daemon.started:
        status = "stopping" if daemon.stopping else "starting"
        return web.json_response({"status": status}, status=503)
    try:
        await asyncio.to_thread(require_current, daemon.ledger.engine)
    except RetentionError as exc:
        return web.json_response({"status": "not ready", "error": exc.message}, status=503)
    failing = daemon.failing_probes()
    if failing:
        names = ", ".join(sorted(failing))
        return web.json_response(
            {
                "status": "not ready",
                "error": f"provider {names} failed its last probe",
                "providers": {name: r.as_dict() for name, r in sorted(failing.items())},
            },
            status=503,
        )
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    try:
        body = await asyncio.to_thread(_daemon(request).metrics.render)
    except RetentionError as exc:
        return web.Response(status=503, text=exc.message)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def ingest(request: web.Request) -> web.Response:
    """POST /v1/records: enrol IDs sent by apps; all or nothing, like `import`. A few at a time
    (the body is read first, then parsed once a slot is free), none once the daemon stops."""
    daemon = _daemon(request)
    refused = _refuse_write(request)
    if refused is not None:
        return refused
    # read before waiting for a slot: a slow upload must hold none, and a body nobody reads
    # cannot arrive, so its connection would be cut at the body timeout while it waits
    try:
        data = await request.read()
    except web.RequestPayloadError:  # broken chunked framing, or the client left mid-body
        return _error(400, "the body could not be read: its framing is broken")
    try:
        async with daemon.writes.slot():  # parsed a few at a time; queued once there is room
            checked = _checked_ingest(data, daemon)
            if isinstance(checked, web.Response):
                return checked
            committed = await daemon.ingest.enqueue(checked)
    except GateClosedError:
        return _error(503, STOPPING)
    try:
        result = await committed  # with the others that arrived meanwhile: group commit
    except RetentionError as exc:  # the ledger is away: the client should retry later
        return _error(503, exc.message)
    return web.json_response(
        {"accepted": result.accepted, "duplicates": result.duplicates}, status=202
    )


def _checked_ingest(data: bytes, daemon: Daemon) -> list[NewRecord] | web.Response:
    """One ingest body's records, or the answer that refuses it (nothing of it is written)."""
    try:
        body = loads(data)
    except (ValueError, RecursionError) as exc:
        return _error(400, f"the body is not JSON: {json_error(exc)}")
    items = body.get("records") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return _error(400, 'expected {"records": [...]}')
    if len(items) > MAX_ITEMS:
        return _error(413, f"at most {MAX_ITEMS} records a request")
    valid, rejects = validate_rows(
        enumerate(items), providers=set(daemon.settings.providers), now=daemon.clock()
    )
    if rejects:
        return web.json_response(
            {
                "error": "invalid records; none were accepted",
                "items": [{"index": r.line, "error": r.error} for r in rejects],
            },
            status=400,
        )
    return valid


async def receipt(request: web.Request) -> web.Response:
    """GET /v1/receipts/{id}: the deletion receipt of one response (the ingest token's)."""
    daemon = _daemon(request)
    refused = _refuse_unauthorized(request)
    if refused is not None:
        return refused
    try:
        async with daemon.writes.slot():  # a receipt may sign a checkpoint first
            data = await asyncio.to_thread(
                issue_receipt,
                daemon.ledger,
                request.match_info["id"],
                signer=daemon.signer,
                interval=daemon.settings.audit.checkpoint_interval,
                publish=daemon.witnesses.publish,
            )
    except GateClosedError:
        return _error(503, STOPPING)
    except InvalidIdError as exc:
        return _error(400, exc.message)
    except UsageError as exc:  # no deletion of that ID is recorded
        return _error(404, exc.message)
    except RetentionError as exc:  # the ledger is away, or nothing can sign
        return _error(503, exc.message)
    return web.Response(
        body=receipt_text(data).encode(), headers={"Content-Type": "application/json"}
    )


async def erase(request: web.Request) -> web.Response:
    """POST /v1/erasures: a data subject's erasure request (the ingest token's). The subject's
    records are due at once and the daemon sweeps now, not at its next interval."""
    daemon = _daemon(request)
    data = await write_body(
        request,
        MAX_ERASURE_BODY,
        f"the body is over {MAX_ERASURE_BODY // 1024} KiB; a request names one subject",
    )
    if isinstance(data, web.Response):
        return data
    return await in_write_slot(daemon, lambda: _erase(data, daemon))


async def write_body(request: web.Request, limit: int, too_big: str) -> bytes | web.Response:
    """The body of a small write (erasure, hold), or the answer that refuses it: no or a
    wrong token, a compressed body, framing that cannot be read (400), or more than `limit`
    bytes (413, saying `too_big`)."""
    refused = _refuse_write(request)
    if refused is not None:
        return refused
    try:
        data = await _body(request, limit)
    except web.RequestPayloadError:
        return _error(400, "the body could not be read: its framing is broken")
    return _error(413, too_big) if data is None else data


async def in_write_slot(
    daemon: Daemon, work: Callable[[], Awaitable[web.Response]]
) -> web.Response:
    """`work()`'s answer, run in one of the write gate's slots; 503 once the daemon stops."""
    try:
        async with daemon.writes.slot():
            return await work()
    except GateClosedError:
        return _error(503, STOPPING)


async def _body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is longer than `limit` bytes (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    while chunk := await request.content.read(limit + 1 - len(data)):
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


async def _erase(data: bytes, daemon: Daemon) -> web.Response:
    """Check and file one erasure request; ask for a sweep when it left records due."""
    try:
        body = loads(data)
    except (ValueError, RecursionError) as exc:
        return _error(400, f"the body is not JSON: {json_error(exc)}")
    if not isinstance(body, dict):
        return _error(400, 'expected {"subject": {"KEY": "VALUE"}, "reason": "..."}')
    unknown = sorted(str(k) for k in body if k not in ERASURE_FIELDS)
    if unknown:
        return _error(
            400, f"unknown field {quote(unknown[0])} (expected: {', '.join(ERASURE_FIELDS)})"
        )
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        return _error(400, "dry_run: expected true or false")
    try:
        wanted = checked_request(
            body.get("subject"), body.get("reason"), body.get("ticket"), daemon.settings
        )
    except InputError as exc:  # its message never holds a subject's value
        return _error(400, exc.message)
    try:
        await off_loop(daemon.follow_ledger_policies)
        result = await off_loop(
            request_erasure,
            daemon.ledger,
            daemon.settings,
            wanted,
            dry_run=dry_run,
            policies=daemon.policies,
        )
    except RetentionError as exc:  # the ledger is away, or the erasure key cannot be read
        return _error(503, exc.message)
    if dry_run:
        return web.json_response(result)
    if result.get("due"):
        daemon.sweep_now()
    return web.json_response(result, status=202)


async def erasure(request: web.Request) -> web.Response:
    """GET /v1/erasures/{id}: an erasure request and its progress (the ingest token's)."""
    daemon = _daemon(request)
    refused = _refuse_unauthorized(request)
    if refused is not None:
        return refused
    try:
        data = await off_loop(erasure_status, daemon.ledger, request.match_info["id"])
    except InputError as exc:  # no such request
        return _error(404, exc.message)
    except RetentionError as exc:  # the ledger is away
        return _error(503, exc.message)
    return web.json_response(data)


def _refuse_write(request: web.Request) -> web.Response | None:
    """The answer to a write that may not go on: no or a wrong token, or a compressed body."""
    refused = _refuse_unauthorized(request)
    if refused is not None:
        return refused
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return _error(415, "send the body uncompressed (no Content-Encoding)")
    return None


def _refuse_unauthorized(request: web.Request) -> web.Response | None:
    """None when the request carries the ingest token, else its 404 (no token) or 401."""
    try:
        token = _daemon(request).settings.server.ingest_token()
    except RetentionError as exc:  # the token file went bad since start-up (mode, gone)
        # before authentication: once a minute at most, however many clients ask
        _daemon(request).noise.note("ingest.token_unusable", "token_file", error=exc.message)
        return _error(503, "the ingest token cannot be read; the daemon's log says why")
    if token is None:
        return _error(404, "ingest is off: no token is configured")
    register_secret(token)
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, f"Bearer {token}".encode()):
        return _error(401, "missing or wrong bearer token")
    return None


STOPPING = "the daemon is stopping; send again later"


def _error(status: int, message: str) -> web.Response:
    """A JSON error answer."""
    return web.json_response({"error": message}, status=status)
