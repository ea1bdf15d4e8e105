"""Capture response IDs where the app creates them.

    client = retention.capture.instrument(OpenAI(...), ingest_url="http://127.0.0.1:8787",
                                          token=TOKEN, provider="fireworks")

Works on `openai.OpenAI`, `openai.AsyncOpenAI`, `httpx.Client` and `httpx.AsyncClient`,
streamed or not. A response hook wraps the body of each `POST .../responses` so the ID is read
as the app reads the body (nothing is read ahead, nothing waits on the daemon); records of
stored responses go to a background shipper, with the request's `metadata`,
`safety_identifier` and `user` as metadata (capture/sniff.py) so that a data subject's
responses can be erased. `instrument` itself raises at set-up on a misconfiguration (a
client it cannot hook, an `ingest_url` that would send the token in clear, an unusable token);
after that nothing here raises into the app.
"""

from __future__ import annotations

import inspect
import logging
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx

from retention.capture import target
from retention.capture.shipper import Shipper, default_spool
from retention.capture.sniff import Sniffer, is_create
from retention.capture.spool import MAX_BYTES
from retention.core.quoting import quote
from retention.errors import ConfigError
from retention.redaction import scrub

__all__ = ["instrument"]
log = logging.getLogger("retention.capture")
WHY_MAX = 200  # characters of the reason a warning gives: the exception's type and message
C = TypeVar("C")
_shippers: dict[tuple[str, Path], Shipper] = {}
_tees: dict[tuple[str, str], type] = {}
_lock = threading.Lock()


def instrument(
    client: C,
    *,
    ingest_url: str,
    token: str,
    provider: str | None = None,
    spool_path: str | Path | None = None,
    spool_max_bytes: int = MAX_BYTES,
    ca_file: str | Path | None = None,
) -> C:
    """Record the ID of every stored response `client` creates; returns `client` itself.

    `ingest_url` must be https, or http only to loopback (the token travels with every
    request): anything else raises `retention.errors.ConfigError` here, at set-up. `ca_file`
    names the CA (PEM) that signed the daemon's certificate when it is not a public one."""
    http: Any = getattr(client, "_client", client)  # the OpenAI SDK keeps its HTTP client here
    hooks = getattr(http, "event_hooks", None)
    if not isinstance(hooks, dict) or not isinstance(hooks.get("response"), list):
        raise TypeError(
            f"cannot instrument {type(client).__name__}: expected an OpenAI, "
            "AsyncOpenAI, httpx.Client or httpx.AsyncClient"
        )
    target.ingest_url(ingest_url), target.token(token)  # refused here, at set-up
    spool = Path(spool_path) if spool_path else default_spool()
    with _lock:
        shipper = _shippers.get((ingest_url, spool))
        if shipper is None:
            shipper = _shippers[(ingest_url, spool)] = Shipper(
                ingest_url, token, spool, spool_max_bytes=spool_max_bytes, verify=_trust(ca_file)
            )
    is_async = inspect.iscoroutinefunction(getattr(http, "send", None))
    hooks["response"].append((_async_hook if is_async else _sync_hook)(shipper, provider))
    http.event_hooks = hooks  # httpx re-reads hooks through this setter
    return client


def _trust(ca_file: str | Path | None) -> ssl.SSLContext | bool:
    """What the shipper verifies the daemon's certificate with: the system's CAs, or `ca_file`."""
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or "not PEM"
        raise ConfigError(f"cannot load {quote(str(ca_file))}: {why}", key="ca_file") from None


def _tee_class(response: Any, kind: str) -> Any:
    """Our tee built on the byte-stream class of the response's own HTTP library (httpx, or
    the fork a given openai release vendors), so that library accepts it."""
    library = sys.modules[type(response).__module__.split(".")[0]]
    key = (library.__name__, kind)
    if key not in _tees:
        base = getattr(library, "SyncByteStream" if kind == "sync" else "AsyncByteStream")
        mixin = _SyncTee if kind == "sync" else _AsyncTee
        _tees[key] = type(f"{mixin.__name__}_{library.__name__}", (mixin, base), {})
    return _tees[key]


def _wanted(response: httpx.Response) -> bool:
    """A successful POST .../responses."""
    return response.is_success and is_create(response.request.method, response.request.url.path)


def _finish(sniffer: Sniffer, shipper: Shipper, provider: str | None) -> None:
    """Ship what the sniffer found (once)."""
    try:
        record = sniffer.result()
        if record is not None:
            shipper.put({**record, "provider": provider} if provider else record)
    except Exception as exc:
        _not_recorded(exc)


def _tap(response: httpx.Response, kind: str, shipper: Shipper, provider: str | None) -> None:
    """Put a tee on the body of a created response (never raises into the app)."""
    try:
        if _wanted(response):
            sniffer = Sniffer(response.headers.get("content-type", ""), _body(response.request))
            tee = _tee_class(response, kind)
            response.stream = tee(response.stream, sniffer, shipper, provider)
    except Exception as exc:
        _not_recorded(exc)


def _body(request: Any) -> bytes | None:
    """The request's body as sent, when it was sent whole (a streamed upload is not kept, and
    is not read here)."""
    try:
        content = request.content  # raises when the body was a stream nobody read
    except Exception:
        return None
    return content if isinstance(content, bytes) else None


def _not_recorded(exc: Exception) -> None:
    """One warning line in the app's log: a response's ID was not recorded, and why (the
    exception's type and message, secrets redacted, cut short; never the body). The
    traceback goes to debug."""
    why = scrub(f"{type(exc).__name__}: {exc}", WHY_MAX)
    log.warning("retention capture: a response ID was not recorded (%s)", why)
    log.debug("retention capture: why the ID was not recorded", exc_info=exc)


def _sync_hook(shipper: Shipper, provider: str | None) -> Any:
    """A response hook for httpx.Client."""

    def hook(response: httpx.Response) -> None:
        _tap(response, "sync", shipper, provider)

    return hook


def _async_hook(shipper: Shipper, provider: str | None) -> Any:
    """A response hook for httpx.AsyncClient."""

    async def hook(response: httpx.Response) -> None:
        _tap(response, "async", shipper, provider)

    return hook


class _Tee:
    """Passes a body through, showing each chunk to the sniffer; ships once at the end."""

    def __init__(
        self, inner: Any, sniffer: Sniffer, shipper: Shipper, provider: str | None
    ) -> None:
        self.inner, self.sniffer, self.shipper, self.provider = inner, sniffer, shipper, provider
        self.done = False

    def _settle(self) -> None:
        if not self.done:
            self.done = True
            _finish(self.sniffer, self.shipper, self.provider)


class _SyncTee(_Tee):
    """For sync clients."""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            _feed(self.sniffer, chunk)
            yield chunk
        self._settle()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self._settle()


class _AsyncTee(_Tee):
    """For async clients."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            _feed(self.sniffer, chunk)
            yield chunk
        self._settle()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self._settle()


def _feed(sniffer: Sniffer, chunk: bytes) -> None:
    """Show a chunk to the sniffer; its failure is never the app's."""
    try:
        sniffer.feed(chunk)
    except Exception as exc:  # the sniffer stops here: the ID is lost, and said so once
        sniffer.settled = True
        _not_recorded(exc)
