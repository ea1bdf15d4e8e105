"""The provider client, with httpx.MockTransport: headers, URLs, answers, transport errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from retention.config.settings import ProviderSettings
from retention.errors import InvalidIdError
from retention.provider.client import ProviderClient

FIREWORKS = ProviderSettings(
    name="fw", kind="fireworks", base_url="https://fw.test/v1", api_key_env="K", account_id="acme"
)
OPENAI = ProviderSettings(
    name="oa", kind="openai", base_url="https://oa.test/v1", api_key_env="K", account_id="acme"
)


def _run(settings: ProviderSettings, handler, call: str = "delete", rid: str = "resp_1"):  # type: ignore[no-untyped-def]
    """Send one request through a MockTransport."""

    async def go():  # type: ignore[no-untyped-def]
        client = ProviderClient(settings, "sk-secret", transport=httpx.MockTransport(handler))
        try:
            return await getattr(client, call)(rid)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_fireworks_sends_bearer_and_account_header() -> None:
    """DELETE goes to base_url/responses/ID with the key and the account header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={"message": "Response deleted successfully"},
            headers={"x-request-id": "req-9"},
        )

    answer = _run(FIREWORKS, handler)
    assert (answer.status, answer.request_id, answer.error) == (200, "req-9", None)
    assert str(seen[0].url) == "https://fw.test/v1/responses/resp_1"
    assert seen[0].method == "DELETE"
    assert seen[0].headers["authorization"] == "Bearer sk-secret"
    assert seen[0].headers["x-fireworks-account-id"] == "acme"


def test_openai_kind_sends_no_account_header() -> None:
    """OpenAI-compatible servers get no Fireworks header."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "resp_1", "deleted": True})

    assert _run(OPENAI, handler).status == 200
    assert "x-fireworks-account-id" not in seen[0].headers


def test_retry_after_and_error_text_are_read_without_secrets() -> None:
    """A 429 carries Retry-After; an echoed key is redacted from the error."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "2"}, text="slow down sk-secret")

    answer = _run(FIREWORKS, handler)
    assert answer.retry_after == 2.0
    assert "sk-secret" not in (answer.error or "") and "[redacted]" in (answer.error or "")


def test_transport_errors_become_answers() -> None:
    """A refused connection is an answer with no status, never an exception."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    answer = _run(FIREWORKS, handler)
    assert answer.status is None and "ConnectError" in (answer.error or "")


@pytest.mark.parametrize("bad", ["../x", "a/b", "%2e%2e"])
def test_an_invalid_id_never_becomes_a_request(bad: str) -> None:
    """The client validates again before building a URL."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    with pytest.raises(InvalidIdError):
        _run(FIREWORKS, handler, rid=bad)
