"""An httpx transport on aiohttp's connection pool.

httpx's own pool (httpcore) spends time quadratic in the requests it holds once many are in
flight (httpx issue 3215): at 128 concurrent DELETEs the sweep spent most of its CPU choosing
connections. This transport keeps httpx's API (requests, responses, errors) and lets aiohttp's
connector, whose cost per request is constant, carry the bytes. TLS verification stays on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx

_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    # no connection within sock_connect: the provider's fault (the breaker), not the ID's
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),
)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one aiohttp session."""

    def __init__(
        self, *, max_connections: int, timeout_s: float, max_body: int | None = None
    ) -> None:
        self.max_connections, self.timeout_s = max_connections, timeout_s
        self.max_body = max_body  # bytes of an answer's body read through httpx's API
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session, made in the running loop on first use."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # the socket's connect times out first, so a silent host is told from a slow
                # answer (a wait for a pooled connection is neither)
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout_s, sock_connect=self.timeout_s * 0.8
                ),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """One request, its whole body read."""
        status, headers, content = await self.exchange(
            request.method,
            str(request.url),
            list(request.headers.multi_items()),
            request.content or None,
            request=request,
            limit=self.max_body,
        )
        return httpx.Response(
            status, headers=list(headers.items()), stream=httpx.ByteStream(content), request=request
        )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Any,
        body: bytes | None = None,
        *,
        request: httpx.Request | None = None,
        limit: int | None = None,
    ) -> tuple[int, Any, bytes]:
        """Status, headers and body (at most `limit` + 1 bytes of it: more says it was longer;
        the rest is never read and the connection is not reused), with no httpx objects around
        them (the sweep's hot path: building httpx's models for each DELETE cost more than
        sending it); aiohttp's errors are raised as httpx's."""
        session = self._open()
        try:
            async with session.request(
                method, url, headers=headers, data=body, allow_redirects=False
            ) as answer:
                return answer.status, answer.headers, await _read(answer, limit)
        except BaseException as exc:
            translated = _translated(exc, request)
            if translated is exc:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()


async def _read(answer: aiohttp.ClientResponse, limit: int | None) -> bytes:
    """The body, or its first `limit` + 1 bytes (a hostile answer cannot fill the memory)."""
    if limit is None:
        return await answer.read()
    body = bytearray()
    async for chunk in answer.content.iter_any():
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


def _translated(exc: BaseException, request: httpx.Request | None) -> BaseException:
    """aiohttp's errors as httpx's; anything else (cancellation) as it was."""
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}", request=request)
    return exc
