"""The capture shipper's pure rules: where it may send the token, what each answer means,
how long it waits; and the one warning line when an ID is lost."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

import retention.capture
from retention.capture import target
from retention.capture.answers import backoff, judge, retry_after
from retention.errors import ConfigError
from retention.redaction import register_secret


@pytest.mark.parametrize(
    "url",
    [
        "https://retention.example.com",
        "https://10.0.0.7:8787/",
        "http://127.0.0.1:8787",
        "http://127.8.9.1",
        "http://localhost:8787",
        "http://[::1]:8787",
    ],
)
def test_https_anywhere_and_http_to_loopback_are_accepted(url: str) -> None:
    """https to any host, http to loopback only; a trailing slash is dropped."""
    assert target.ingest_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://retention.default.svc:8787", "only to loopback"),
        ("http://10.0.0.7:8787", "only to loopback"),
        ("http://0.0.0.0:8787", "only to loopback"),
        ("ftp://127.0.0.1", "https://"),
        ("127.0.0.1:8787", "https://"),
        ("https://user:pw@retention.example.com", "credentials"),
        ("https://retention.example.com?token=x", "no query"),
        ("https://retention.example.com:99999", "not a URL"),
        (None, "expected a URL"),
    ],
)
def test_unsafe_or_broken_urls_are_refused_naming_ingest_url(url: object, says: str) -> None:
    """Each refusal is a ConfigError naming `ingest_url` and the rule."""
    with pytest.raises(ConfigError, match=r"^ingest_url: ") as caught:
        target.ingest_url(url)
    assert says in caught.value.message
    assert "pw" not in caught.value.message


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak", "clé", None])
def test_unusable_tokens_are_refused_without_being_shown(token: object) -> None:
    """An empty, spaced, multi-line or non-ASCII token is refused; the message never shows it."""
    with pytest.raises(ConfigError, match=r"^token: ") as caught:
        target.token(token)
    assert not token or str(token) not in caught.value.message


def test_answers_are_judged_by_status_and_named_items() -> None:
    """2xx sent; a 400 naming items drops those with valid indexes; the daemon's bare 400 or
    a 413 halves; 401/403/404 and a 400 that is not the daemon's are refusals kept for later;
    everything else is retried."""
    assert judge(202, {"accepted": 3}, 3).kind == "sent"
    body = {
        "items": [
            {"index": 1, "error": "id: bad"},
            {"index": 7, "error": "out of range"},
            {"index": True, "error": "a bool is no index"},
            {"index": 2},
        ]
    }
    verdict = judge(400, body, 3)
    assert (verdict.kind, verdict.bad) == ("drop", {1: "id: bad", 2: "refused"})
    assert judge(400, {"error": "not JSON"}, 3).kind == "split"
    assert judge(400, None, 3).kind == "refused"  # not the daemon's answer: IDs kept
    assert judge(400, {"detail": "proxy"}, 3).kind == "refused"
    assert judge(413, {"error": "too large"}, 3).kind == "split"
    for status in (401, 403, 404):
        assert judge(status, None, 3).kind == "refused"
    for status in (500, 502, 503, 429, 408, 302, 418):
        assert judge(status, None, 3).kind == "retry"


def test_backoff_doubles_from_first_to_cap_with_jitter() -> None:
    """Each wait lies between half and all of min(cap, first * 2**(n-1)); never above cap."""
    rand = random.Random(7)
    for failures in range(1, 80):
        ceiling = min(60.0, 1.0 * 2 ** (failures - 1))
        wait = backoff(failures, 1.0, 60.0, rand)
        assert ceiling / 2 <= wait <= ceiling
    assert retry_after("5", 60) == 5 and retry_after("600", 60) == 60
    assert retry_after(None, 60) == retry_after("soon", 60) == retry_after("nan", 60) == 0


def test_a_ca_file_that_cannot_be_loaded_is_refused_at_set_up(tmp_path: Path) -> None:
    """A missing or non-PEM `ca_file` is a ConfigError naming `ca_file`, not an ssl error."""
    (tmp_path / "junk.pem").write_text("not a certificate")
    for ca_file in (tmp_path / "missing.pem", tmp_path / "junk.pem"):
        with pytest.raises(ConfigError, match=r"^ca_file: cannot load "):
            retention.capture.instrument(
                httpx.Client(),
                ingest_url="https://retention.example.com",
                token="t0ken",
                spool_path=tmp_path / "spool.jsonl",
                ca_file=ca_file,
            )


BODY = b'{"id": "resp_lost1", "store": true, "output_text": "private-answer-text"}'
LOST_SECRET = "lost-path-secret-0123456789"


class _BrokenShipper:
    """A shipper whose `put` fails with a long message holding a registered secret."""

    def put(self, record: dict[str, Any]) -> None:
        raise RuntimeError(f"queue gone {LOST_SECRET} " + "x" * 1000)


def _created(hook: Any) -> httpx.Response:
    """POST /v1/responses through a client carrying `hook`, the body read as an app reads it."""

    def answer(request: httpx.Request) -> httpx.Response:
        chunks = iter([BODY[:20], BODY[20:]])  # streamed, as a provider sends it
        return httpx.Response(200, content=chunks, headers={"content-type": "application/json"})

    client = httpx.Client(transport=httpx.MockTransport(answer), event_hooks={"response": [hook]})
    with client:
        return client.post("https://api.example.com/v1/responses", json={"input": "hi"})


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warning lines the capture logger wrote."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "retention.capture" and r.levelno == logging.WARNING
    ]


def test_an_id_lost_while_shipping_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A failed shipping is one warning: exception named, cut short, no secret, no body."""
    register_secret(LOST_SECRET)
    caplog.set_level(logging.DEBUG, logger="retention.capture")
    hook = retention.capture._sync_hook(_BrokenShipper(), "fw")  # type: ignore[arg-type]
    response = _created(hook)
    assert response.content == BODY
    [line] = _warnings(caplog)
    assert line.startswith("retention capture: a response ID was not recorded (RuntimeError: ")
    assert "queue gone" in line and len(line) < 300
    assert LOST_SECRET not in line and "private-answer-text" not in line


def test_a_hook_that_fails_is_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook that cannot tap the body leaves the app's response whole and logs one warning."""

    def broken(*_: object) -> None:
        raise ValueError("sniffer cannot start")

    monkeypatch.setattr(retention.capture, "Sniffer", broken)
    caplog.set_level(logging.WARNING, logger="retention.capture")
    response = _created(retention.capture._sync_hook(_BrokenShipper(), None))  # type: ignore[arg-type]
    assert response.content == BODY
    assert _warnings(caplog) == [
        "retention capture: a response ID was not recorded (ValueError: sniffer cannot start)"
    ]
