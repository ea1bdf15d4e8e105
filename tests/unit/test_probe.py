"""The provider probe's verdicts and the circuit breaker, with httpx.MockTransport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from retention.config.settings import ProviderSettings
from retention.provider.client import Answer, ProviderClient
from retention.provider.probe import (
    AUTH_FAILED,
    MISCONFIGURED,
    UNREACHABLE,
    ProbeResult,
    endpoint_verdict,
    probe,
    visibility_verdict,
)
from retention.sweep.breaker import Breaker

FIREWORKS = ProviderSettings(
    name="fw", kind="fireworks", base_url="https://fw.test/v1", api_key_env="K", account_id="acme"
)
OPENAI = replace(FIREWORKS, name="oa", kind="openai", base_url="https://oa.test/v1")
URL = "https://fw.test/v1/responses?limit=1"


def _probe(settings: ProviderSettings, handler, ids: list[str] | None = None) -> ProbeResult:  # type: ignore[no-untyped-def]
    """Probe through a MockTransport, without real waits between tries."""

    async def no_wait(_seconds: float) -> None:
        """Return at once."""

    async def go() -> ProbeResult:
        """Probe once."""
        client = ProviderClient(settings, "sk-secret", transport=httpx.MockTransport(handler))
        try:
            return await probe(client, ids or [], sleep=no_wait)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_fireworks_probe_lists_one_response() -> None:
    """Kind fireworks asks GET /responses?limit=1 and passes on 200 with a data list."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        """The API's listing."""
        seen.append(str(request.url))
        return httpx.Response(200, json={"object": "list", "data": []})

    result = _probe(FIREWORKS, handler)
    assert result.ok and seen == [URL]


def test_openai_probe_asks_for_models() -> None:
    """Kind openai asks GET /models."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        """The models list."""
        seen.append(str(request.url))
        return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})

    assert _probe(OPENAI, handler).ok and seen == ["https://oa.test/v1/models"]


@pytest.mark.parametrize(
    ("status", "body", "event"),
    [
        (404, b"404: Not Found", MISCONFIGURED),
        (404, b'{"detail": "Not Found"}', MISCONFIGURED),
        (404, b'{"error": {"message": "not found"}}', MISCONFIGURED),
        (200, b"<html>welcome</html>", MISCONFIGURED),
        (200, b'{"object": "list"}', MISCONFIGURED),
        (200, b'[{"data": []}]', MISCONFIGURED),
        (301, b"", MISCONFIGURED),
        (400, b"{}", MISCONFIGURED),
        (401, b"{}", AUTH_FAILED),
        (403, b"{}", AUTH_FAILED),
        (503, b"{}", UNREACHABLE),
        (429, b"{}", UNREACHABLE),
    ],
)
def test_endpoint_verdicts(status: int, body: bytes, event: str) -> None:
    """Only 200 with a JSON object holding a `data` list passes; a 404 fails whatever its body."""
    result = endpoint_verdict("fw", "fireworks", URL, Answer(status), body)
    assert (result.ok, result.event, result.http_status) == (False, event, status)
    assert URL in result.reason


def test_no_connection_is_unreachable_with_a_hint() -> None:
    """A refused connection names the URL and hints at the port."""
    error = "ConnectError: Cannot connect to host fw.test:443 ssl:default [Connect call failed]"
    answer = Answer(None, error=error, connection_failed=True)
    result = endpoint_verdict("fw", "fireworks", URL, answer, b"")
    assert result.event == UNREACHABLE and "is the port right" in result.reason


def test_tls_failure_hints_at_plain_http() -> None:
    """A TLS handshake failure says the server may be plain http."""
    answer = Answer(None, error="ConnectError: [SSL: WRONG_VERSION_NUMBER] wrong version number")
    result = endpoint_verdict("fw", "fireworks", URL, answer, b"")
    assert result.event == UNREACHABLE and "plain http" in result.reason


def test_transient_answers_are_asked_again() -> None:
    """A 429 and a 503 are tried again; the third answer decides."""
    answers = iter([429, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        """Busy, then fine."""
        return httpx.Response(next(answers), json={"data": []})

    assert _probe(FIREWORKS, handler).ok


def test_every_recent_id_404_means_the_key_sees_nothing() -> None:
    """An accepted key whose GETs of recent IDs all answer 404 fails as misconfigured."""

    def handler(request: httpx.Request) -> httpx.Response:
        """A listing for everyone, 404 for every ID."""
        if request.url.path.endswith("/responses"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(404, json={"error": {"message": "not found"}})

    result = _probe(FIREWORKS, handler, ["r1", "r2", "r3", "r4"])
    assert (result.event, result.check) == (MISCONFIGURED, "visibility")
    assert "cannot see the recorded responses" in result.reason and "30d" in result.reason


def test_one_visible_id_is_enough() -> None:
    """One recent ID answering 200 passes, even when the others are gone."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        """Only r2 is stored."""
        asked.append(request.url.path)
        if request.url.path.endswith("/responses"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200 if request.url.path.endswith("/r2") else 404, json={})

    assert _probe(FIREWORKS, handler, ["r1", "r2", "r3", "r4"]).ok
    assert sorted(asked)[-1] == "/v1/responses/r3", "at most three IDs are looked up"
    assert len(asked) == 4


def test_visibility_verdicts() -> None:
    """A refused GET is an auth failure; a 5xx among 404s is unreachable, never misconfigured."""
    refused = visibility_verdict("fw", [Answer(404), Answer(403)], "30d")
    flaky = visibility_verdict("fw", [Answer(404), Answer(503)], "30d")
    assert (refused.event, flaky.event) == (AUTH_FAILED, UNREACHABLE)


def test_storage_period_is_in_the_reason() -> None:
    """The reason names the provider's own storage period."""
    settings = replace(FIREWORKS, storage_period=timedelta(days=10))

    def handler(request: httpx.Request) -> httpx.Response:
        """Listing, then 404s."""
        if request.url.path.endswith("/responses"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(404)

    assert "(10d)" in _probe(settings, handler, ["r1"]).reason


def test_breaker_opens_after_failures_in_a_row_only() -> None:
    """Any answer restarts the count; the failure that reaches the threshold opens it, once."""
    breaker = Breaker(threshold=3)
    dropped, answered = Answer(None, connection_failed=True), Answer(500)
    assert [breaker.observe(a) for a in (dropped, dropped, answered, dropped, dropped)] == [
        False
    ] * 5
    assert breaker.observe(dropped) is True and breaker.open
    assert breaker.observe(dropped) is False, "opens once"


def test_timeouts_do_not_count_as_connection_failures() -> None:
    """A read timeout may have reached the provider: it is the ID's attempt, not the breaker's."""

    def handler(request: httpx.Request) -> httpx.Response:
        """Time out."""
        raise httpx.ReadTimeout("slow", request=request)

    answer = _delete_through(handler)
    assert answer.status is None and not answer.connection_failed


def test_refused_connection_is_a_connection_failure() -> None:
    """A refused connection is flagged as the provider's fault."""

    def handler(request: httpx.Request) -> httpx.Response:
        """Refuse."""
        raise httpx.ConnectError("refused", request=request)

    assert _delete_through(handler).connection_failed


def _delete_through(handler: Callable[[httpx.Request], httpx.Response]) -> Answer:
    """The answer to one DELETE sent through a transport that calls `handler`."""

    async def go() -> Answer:
        client = ProviderClient(FIREWORKS, "k", transport=httpx.MockTransport(handler))
        try:
            return await client.delete("r1")
        finally:
            await client.aclose()

    return asyncio.run(go())
