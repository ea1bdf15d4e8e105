"""The daemon's HTTP surface (aiohttp): health, readiness, metrics, record ingest and deletion
receipts."""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any

from aiohttp import web

from retention.audit.receipt_format import receipt_text
from retention.core.record_input import json_error, loads, validate_rows
from retention.daemon.write_gate import GateClosedError
from retention.errors import InvalidIdError, RetentionError, UsageError
from retention.evidence.receipts import issue_receipt
from retention.ledger.db import require_current
from retention.logs import get_logger, register_secret
from retention.services.recording import enrol

if TYPE_CHECKING:
    from retention.daemon.service import Daemon

MAX_BODY = 1024 * 1024  # bytes; larger bodies get 413 before they are read
MAX_ITEMS = 10_000
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
    refused = _refuse_unauthorized(request)
    if refused is not None:
        return refused
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        return _error(415, "send the body uncompressed (no Content-Encoding)")
    # read before waiting for a slot: a slow upload must hold none, and a body nobody reads
    # cannot arrive, so its connection would be cut at the body timeout while it waits
    try:
        data = await request.read()
    except web.RequestPayloadError:  # broken chunked framing, or the client left mid-body
        return _error(400, "the body could not be read: its framing is broken")
    try:
        async with daemon.writes.slot():
            return await _ingest(data, daemon)
    except GateClosedError:
        return _error(503, STOPPING)


async def _ingest(data: bytes, daemon: Daemon) -> web.Response:
    """Check and enrol one ingest body."""
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
    try:
        await asyncio.to_thread(daemon.follow_ledger_policies)
        result = await asyncio.to_thread(
            enrol, daemon.ledger, daemon.settings, daemon.policies, valid, source="ingest"
        )
    except RetentionError as exc:  # the ledger is away: the client should retry later
        return _error(503, exc.message)
    return web.json_response(
        {"accepted": result.accepted, "duplicates": result.duplicates}, status=202
    )


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
