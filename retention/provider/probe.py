"""Prove that a provider's base URL serves the API, with our credentials, before any DELETE.

A 404 to DELETE means "no such response" only when the Responses API itself says it: a base URL
missing `/v1`, a proxy's HTML page and a FastAPI router all answer 404 too, and the last one in
JSON, so no body shape proves anything. The probe asks instead for what the API must serve
(`GET /responses?limit=1` on Fireworks, `GET /models` on OpenAI-compatible servers) and wants
200 with a JSON `data` list; then GETs a few recently recorded IDs, because a key of another
project or principal is accepted but answers 404 to every ID of ours.

The verdicts are pure functions of the answers; `probe` only sends the requests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from retention.core.durations import format_duration
from retention.core.outcomes import backoff
from retention.core.vocabulary import Event, ObjectKind
from retention.provider.client import Answer, ProviderClient

ENDPOINTS = {"fireworks": "/responses?limit=1", "openai": "/models", "azure": "/models"}
APIS = {
    "fireworks": "the Fireworks Responses API",
    "openai": "an OpenAI-compatible API",
    "azure": "Azure OpenAI's v1 API",
}
# what a refusal may mean, by kind and how the key was sent
AUTH_HINTS = {
    ("azure", "bearer"): " (Azure OpenAI takes an API key in the `api-key` header: drop "
    "`auth: bearer`, which is for Microsoft Entra ID tokens)",
    ("azure", "api-key"): " (an Entra ID token goes as a bearer token: `auth: bearer`)",
}
SAMPLE = 3  # recent IDs looked up
TRIES = 4  # a transient answer (no connection, 429, 5xx) is asked again, this many times in all
MAX_WAIT_S = 5.0  # the longest Retry-After the probe honours before asking again
MISCONFIGURED, UNREACHABLE, AUTH_FAILED, CANNOT_DELETE = (
    Event.PROVIDER_MISCONFIGURED,
    Event.PROVIDER_UNREACHABLE,
    Event.PROVIDER_AUTH_FAILED,
    Event.PROVIDER_CANNOT_DELETE,
)
# the listing that proves a provider keeps a kind of object deleted one by one, besides
# responses; and the answers to it that say it keeps none
KIND_LISTINGS = {ObjectKind.CHAT_COMPLETION: "/chat/completions?limit=1"}
NO_SUCH_API = (404, 405, 501)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One provider's probe: `event` is None when it passed, else the fault to record."""

    provider: str
    event: Event | None
    reason: str
    check: str = "endpoint"  # what decided it: endpoint | visibility
    http_status: int | None = None

    @property
    def ok(self) -> bool:
        """Whether DELETEs may be sent to this provider."""
        return self.event is None

    def as_dict(self) -> dict[str, str | int | bool | None]:
        """JSON-ready (for /readyz, doctor and logs)."""
        return {
            "provider": self.provider,
            "ok": self.ok,
            "event": self.event,
            "check": self.check,
            "reason": self.reason,
            "http_status": self.http_status,
        }


async def probe(
    client: ProviderClient,
    recent_ids: list[str],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ProbeResult:
    """Probe one provider: its API endpoint, then up to SAMPLE of `recent_ids`."""
    settings = client.settings
    path = ENDPOINTS[settings.kind]
    answer, body = await _patiently(partial(client.fetch, path), sleep)
    verdict = endpoint_verdict(
        settings.name, settings.kind, f"{settings.base_url}{path}", answer, body, settings.auth
    )
    if not verdict.ok or not recent_ids:
        return verdict
    sample = recent_ids[:SAMPLE]
    answers = await asyncio.gather(
        *(_patiently(partial(_get, client, rid), sleep) for rid in sample)
    )
    return visibility_verdict(
        settings.name, [a for a, _ in answers], format_duration(settings.storage_period)
    )


async def probe_kind(
    client: ProviderClient,
    kind: ObjectKind,
    recent_ids: list[str],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ProbeResult:
    """Whether this provider can delete `kind` (stored chat completions), asked before the
    first of them is deleted: its listing must answer 200 with a `data` list (404, 405 or
    501 say it keeps none that can be deleted: `provider.cannot_delete`, and a 404 to one
    of them would prove nothing), then up to SAMPLE of `recent_ids` must not all be 404."""
    settings = client.settings
    path = KIND_LISTINGS[kind]
    answer, body = await _patiently(partial(client.fetch, path), sleep)
    url = f"{settings.base_url}{path.split('?')[0]}"
    if answer.status in NO_SUCH_API:
        reason = f"GET {url} answered {answer.status}: this provider has no {kind} to delete"
        return ProbeResult(settings.name, CANNOT_DELETE, reason, "kind", answer.status)
    verdict = endpoint_verdict(settings.name, settings.kind, url, answer, body, settings.auth)
    if not verdict.ok or not recent_ids:
        return verdict
    answers = await asyncio.gather(
        *(_patiently(partial(_get, client, rid, kind), sleep) for rid in recent_ids[:SAMPLE])
    )
    return visibility_verdict(settings.name, [a for a, _ in answers], None, kind)


async def _get(
    client: ProviderClient, response_id: str, kind: str = ObjectKind.RESPONSE
) -> tuple[Answer, bytes]:
    """GET one response (or other object), in the shape `_patiently` wants."""
    return await client.get(response_id, kind), b""


async def _patiently(
    send: Callable[[], Awaitable[tuple[Answer, bytes]]],
    sleep: Callable[[float], Awaitable[None]],
) -> tuple[Answer, bytes]:
    """Send, asking again after a short wait while the answer is transient."""
    for attempt in range(1, TRIES + 1):
        answer, body = await send()
        if not transient(answer) or attempt == TRIES:
            return answer, body
        retry_after = min(answer.retry_after, MAX_WAIT_S) if answer.retry_after else None
        await sleep(backoff(attempt, retry_after=retry_after))
    raise AssertionError("unreachable")  # pragma: no cover


def transient(answer: Answer) -> bool:
    """An answer that may differ if asked again: no answer, 429, 5xx."""
    return answer.status is None or answer.status == 429 or answer.status >= 500


def endpoint_verdict(
    provider: str, kind: str, url: str, answer: Answer, body: bytes, auth: str = "bearer"
) -> ProbeResult:
    """What the answer to the API endpoint's GET says about the base URL and the key."""
    status, api = answer.status, APIS[kind]
    if status is None:
        return ProbeResult(provider, UNREACHABLE, f"cannot reach {url}: {_hinted(answer.error)}")
    if status in (401, 403):
        hint = " (or account_id)" if kind == "fireworks" and status == 403 else ""
        hint = AUTH_HINTS.get((kind, auth), hint)
        reason = f"GET {url} answered {status}: the provider refused our credentials{hint}"
        return ProbeResult(provider, AUTH_FAILED, reason, http_status=status)
    if status == 429 or status >= 500:
        reason = f"GET {url} answered {status} {TRIES} times in a row: the provider is not serving"
        return ProbeResult(provider, UNREACHABLE, reason, http_status=status)
    if status == 404:
        reason = (
            f"GET {url} answered 404: this base URL does not serve {api} "
            "(is `/v1` missing from base_url, or is another server or a proxy answering?)"
        )
        return ProbeResult(provider, MISCONFIGURED, reason, http_status=status)
    if not 200 <= status < 300:
        reason = f"GET {url} answered {status}, not 200: this base URL does not serve {api}"
        return ProbeResult(provider, MISCONFIGURED, reason, http_status=status)
    if not _has_data_list(body):
        reason = f"GET {url} answered 200 without a JSON `data` list: this is not {api}"
        return ProbeResult(provider, MISCONFIGURED, reason, http_status=status)
    return ProbeResult(
        provider, None, f"GET {url} answered 200 with a `data` list", http_status=200
    )


def visibility_verdict(
    provider: str, answers: list[Answer], period: str | None, kind: str = ObjectKind.RESPONSE
) -> ProbeResult:
    """What the GETs of recently recorded IDs say: one visible is enough; all 404 means the
    key sees another project's data (or none). `period`: the provider's storage period, of
    which the IDs are (None for a kind kept until deleted)."""
    statuses = [a.status for a in answers]
    seen = sum(1 for s in statuses if s is not None and 200 <= s < 300)
    if seen:
        reason = f"serves the API; {seen} of {len(answers)} recent IDs visible"
        return ProbeResult(provider, None, reason, "visibility", 200)
    refused = next((s for s in statuses if s in (401, 403)), None)
    if refused is not None:
        reason = f"GET of a recorded ID answered {refused}: the provider refused our credentials"
        return ProbeResult(provider, AUTH_FAILED, reason, "visibility", refused)
    if all(s == 404 for s in statuses):
        within = f" that were created within the storage period ({period})" if period else ""
        objects = "responses" if kind == ObjectKind.RESPONSE else f"{kind} objects"
        reason = (
            f"the key cannot see the recorded {objects}: GET answered 404 for each of the "
            f"{len(answers)} pending IDs recorded last{within} (a key of another project, "
            "account or principal?)"
        )
        return ProbeResult(provider, MISCONFIGURED, reason, "visibility", 404)
    odd = next(a for a in answers if a.status != 404)
    if transient(odd):
        what = odd.status if odd.status is not None else _hinted(odd.error)
        reason = f"GET of a recorded ID failed {TRIES} times in a row: {what}"
        return ProbeResult(provider, UNREACHABLE, reason, "visibility", odd.status)
    reason = f"GET of a recorded ID answered {odd.status}, neither 200 nor 404"
    return ProbeResult(provider, MISCONFIGURED, reason, "visibility", odd.status)


def _has_data_list(body: bytes) -> bool:
    """Whether `body` is a JSON object holding a `data` list."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("data"), list)


_HINTS = (  # (markers in the error text, hint), the first match wins
    (("Connect call failed", "Connection refused"), "is the port right and the server up?"),
    (
        ("DNSError", "Name or service not known", "nodename nor servname", "name resolution"),
        "is the host name right?",
    ),
    (
        ("SSLError", "[SSL", "CertificateError", "CERTIFICATE_VERIFY_FAILED"),
        "TLS failed: is the server plain http, or its certificate wrong?",
    ),
)


def _hinted(error: str | None) -> str:
    """A transport error with a hint at its usual cause."""
    text = error or "no answer"
    for markers, hint in _HINTS:
        if any(marker in text for marker in markers):
            return f"{text} ({hint})"
    return text
