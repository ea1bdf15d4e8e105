"""The provider client on httpx: DELETE and GET one response, nothing raised for HTTP status.

Every transport problem becomes an Answer with `status=None`; the sweep decides what it means.
An ID reaches a URL only through `validate_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import httpx

from retention import __version__
from retention.config.settings import ProviderSettings
from retention.core.ids import validate_id
from retention.core.outcomes import parse_retry_after
from retention.core.times import utcnow
from retention.logs import redact, register_secret

REQUEST_ID_HEADERS = ("x-request-id", "fireworks-request-id", "request-id")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the provider said (or that it could not be reached)."""

    status: int | None
    request_id: str | None = None
    retry_after: float | None = None
    error: str | None = None


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
        headers = {"Authorization": f"Bearer {api_key}", "User-Agent": f"retention/{__version__}"}
        if settings.kind == "fireworks" and settings.account_id:
            headers["x-fireworks-account-id"] = settings.account_id
        limits = httpx.Limits(
            max_connections=settings.max_concurrency,
            max_keepalive_connections=settings.max_concurrency,
        )
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=settings.timeout_s,
            limits=limits,
            transport=transport,
            follow_redirects=False,
            verify=True,
            trust_env=False,
        )

    def url(self, response_id: str) -> str:
        """The URL of one response; the ID is validated here, at the last moment, again."""
        return f"{self.settings.base_url}/responses/{validate_id(response_id)}"

    async def delete(self, response_id: str) -> Answer:
        """DELETE one response."""
        return await self._send("DELETE", self.url(response_id))

    async def get(self, response_id: str) -> Answer:
        """GET one response (to confirm that it is gone)."""
        return await self._send("GET", self.url(response_id))

    async def _send(self, method: str, url: str) -> Answer:
        """Send one request and describe the answer."""
        try:
            response = await self._http.request(method, url)
        except httpx.TransportError as exc:
            return Answer(status=None, error=redact(f"{type(exc).__name__}: {exc}")[:300])
        return describe(response, utcnow())

    async def aclose(self) -> None:
        """Close connections."""
        await self._http.aclose()


def describe(response: httpx.Response, now: datetime) -> Answer:
    """An Answer from an httpx response: status, request ID, Retry-After, error text."""
    request_id = next(
        (response.headers[h] for h in REQUEST_ID_HEADERS if h in response.headers), None
    )
    error = None
    if not response.is_success and response.status_code != 404:
        error = redact(f"HTTP {response.status_code}: {response.text[:200]}")
    return Answer(
        status=response.status_code,
        request_id=request_id,
        retry_after=parse_retry_after(response.headers.get("retry-after"), now),
        error=error,
    )
