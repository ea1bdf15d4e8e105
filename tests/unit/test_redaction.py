"""Secrets out of every text: the forms a key takes once escaped, provider values scrubbed at
the client, log lines, and keys refused at load when they cannot be header values."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import structlog

from retention import logs
from retention.config.settings import ProviderSettings, ServerSettings
from retention.errors import ConfigError
from retention.provider.client import MAX_REQUEST_ID, answer_of
from retention.redaction import REDACTED, forms_of, redact, redact_tree, register_secret, scrub

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = "Key\"With\\Quote's-unit-7731"  # both quotes and a backslash: every escape differs


@pytest.fixture(autouse=True)
def registered() -> None:
    """The key of these tests is known, as the client makes it known."""
    register_secret(KEY)


def _leaks(text: str) -> list[str]:
    """The forms of KEY that `text` still holds."""
    return [form for form in forms_of(KEY) if form in text]


@pytest.mark.parametrize(
    "shown",
    [
        KEY,
        json.dumps(KEY),
        json.dumps(KEY, ensure_ascii=False),
        json.dumps(json.dumps({"error": KEY})),
        repr(KEY),
        repr(f'"{KEY}'),
        repr(f"'{KEY}"),
        repr(json.dumps(KEY)),
        json.dumps(repr(KEY)),
        f"<p>{__import__('html').escape(KEY)}</p>",
    ],
)
def test_every_escaped_form_is_redacted(shown: str) -> None:
    """Raw, JSON-escaped, repr-escaped (either quote), HTML-escaped and escaped twice: gone."""
    text = redact(f"before {shown} after")
    assert not _leaks(text) and REDACTED in text, text


def test_a_plain_key_has_one_form_and_short_values_are_not_registered() -> None:
    """A key with nothing to escape is one search; three characters redact nothing."""
    assert forms_of("sk-plain-0001") == {"sk-plain-0001"}
    register_secret("abc")
    assert redact("abc abc") == "abc abc"


def test_scrub_removes_controls_before_redacting_then_cuts() -> None:
    """A key split by a control character is whole again and caught; the cap applies last."""
    split = KEY[:6] + "\x00\u200b" + KEY[6:]
    assert scrub(f"id {split}\r\n", 128) == f"id {REDACTED}"
    assert scrub("x" * 500, 128) == "x" * 125 + "..."
    assert scrub(None, 128) is None
    assert scrub("\ud800lone", 10) == "lone"


def test_redact_tree_walks_keys_and_values() -> None:
    """A decoded listing: every string, keys included, nested."""
    tree = {"data": [{"metadata": {"echo": f"Bearer {KEY}", KEY: 1}}], "n": 2, "ok": True}
    assert redact_tree(tree) == {
        "data": [{"metadata": {"echo": f"Bearer {REDACTED}", REDACTED: 1}}],
        "n": 2,
        "ok": True,
    }


def test_answer_scrubs_the_request_id_and_error_body() -> None:
    """An echoing provider: the key in x-request-id (raw, long, with a newline) and JSON-escaped
    in the error body leaves neither field."""
    header = f"req_1 Bearer {KEY}\n" + "z" * 300
    body = json.dumps({"error": {"message": f"bad key {KEY}"}}).encode()
    answer = answer_of(500, {"x-request-id": header}, body, T0)
    assert answer.request_id is not None and answer.error is not None
    assert len(answer.request_id) <= MAX_REQUEST_ID and "\n" not in answer.request_id
    assert not _leaks(answer.request_id) and not _leaks(answer.error)
    assert answer.request_id.startswith(f"req_1 Bearer {REDACTED}")


def test_log_lines_hold_no_form_of_the_key(log_stream: io.StringIO) -> None:
    """The key in a value, nested, in an exception and in the event: the JSON line has none."""
    log = logs.get_logger("test")
    log.info("event", value=KEY, nested={"a": [KEY, json.dumps(KEY)]}, as_repr=repr(KEY))
    try:
        raise ValueError(f"the key was {KEY}")
    except ValueError:
        log.exception("failed")
    text = log_stream.getvalue()
    assert text.count("\n") == 2 and not _leaks(text), text


def test_console_lines_hold_no_form_of_the_key() -> None:
    """The terminal renderer shows values as repr: no form of the key either."""
    stream = io.StringIO()
    logs.configure(stream, level="debug", json=False)
    try:
        logs.get_logger("test").warning("event", value=KEY, items=[KEY])
    finally:
        structlog.reset_defaults()
    assert not _leaks(stream.getvalue()), stream.getvalue()


def _provider(tmp_path: Path, **where: object) -> ProviderSettings:
    """A provider reading its key from `where` (api_key_env or api_key_file)."""
    return ProviderSettings(name="fw", kind="fireworks", base_url="https://fw.test/v1", **where)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["sk-caf\u00e9-0001", "\ufeffsk-bom-0001", "sk-nbsp\u00a00001", "sk-\u201cq\u201d"]
)
def test_a_non_ascii_key_is_refused_naming_the_provider(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key that cannot be a header value: ConfigError (exit 2) naming providers.fw, never
    showing the value, from a variable or from a file."""
    monkeypatch.setenv("RT_UNIT_KEY", value)
    with pytest.raises(ConfigError, match="not ASCII") as caught:
        _provider(tmp_path, api_key_env="RT_UNIT_KEY").api_key()
    assert caught.value.exit_code == 2 and caught.value.key == "providers.fw"
    assert value.strip("\ufeff") not in caught.value.message
    key_file = tmp_path / "key"
    key_file.write_bytes(value.encode("utf-8"))
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="not ASCII") as caught:
        _provider(tmp_path, api_key_file=key_file).api_key()
    assert "sk-" not in caught.value.message


def test_a_good_key_is_registered_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a key makes it known to the redactor at once."""
    monkeypatch.setenv("RT_UNIT_KEY", "sk-registered-when-read-55")
    assert _provider(tmp_path, api_key_env="RT_UNIT_KEY").api_key()
    assert redact("x sk-registered-when-read-55 y") == f"x {REDACTED} y"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_key_and_token_files_open_to_others_are_refused(tmp_path: Path, mode: int) -> None:
    """Readable or writable by group or others: refused, naming the file, its mode and the fix;
    the file is left as it was."""
    key_file, token_file = tmp_path / "key", tmp_path / "token"
    for path in (key_file, token_file):
        path.write_text("sk-mode-test-0001\n")
        path.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        _provider(tmp_path, api_key_file=key_file).api_key()
    message = caught.value.message
    assert caught.value.key == "providers.fw.api_key_file"
    assert f"mode {mode:04o}" in message and f"chmod 600 {key_file}" in message
    with pytest.raises(ConfigError, match=f"chmod 600 {token_file}") as caught:
        ServerSettings(ingest_token_file=token_file).ingest_token()
    assert caught.value.key == "server.ingest_token_file" and "sk-mode" not in caught.value.message
    assert key_file.stat().st_mode & 0o777 == mode


def test_private_key_and_token_files_are_read(tmp_path: Path) -> None:
    """0600 and 0400 files are read, stripped; an empty token file leaves ingest off."""
    key_file, token_file = tmp_path / "key", tmp_path / "token"
    key_file.write_text("sk-private-0001\n")
    key_file.chmod(0o400)
    token_file.write_text("")
    token_file.chmod(0o600)
    assert _provider(tmp_path, api_key_file=key_file).api_key() == "sk-private-0001"
    assert ServerSettings(ingest_token_file=token_file).ingest_token() is None
    assert ServerSettings(ingest_token_env=None).ingest_token() is None


def test_a_missing_token_file_is_named(tmp_path: Path) -> None:
    """A configured token file that is not there is an error, not ingest silently off."""
    with pytest.raises(ConfigError, match="cannot be read: No such file"):
        ServerSettings(ingest_token_file=tmp_path / "nope").ingest_token()


def test_another_users_key_file_is_refused(tmp_path: Path) -> None:
    """A key file owned by another ordinary user, who could rewrite it, is refused even 0600."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    key_file = tmp_path / "key"
    key_file.write_text("sk-owned-0001\n")
    key_file.chmod(0o600)
    os.chown(key_file, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        _provider(tmp_path, api_key_file=key_file).api_key()


def test_a_percent_encoded_key_is_redacted() -> None:
    """In a redirect's Location or a debug link the key is percent-encoded: caught too."""
    for shown in (quote(KEY, safe=""), quote_plus(KEY), json.dumps(quote(KEY, safe=""))):
        assert REDACTED in redact(f"https://p.test/?k={shown}&x=1"), shown


def test_the_head_of_a_key_someone_else_cut_is_redacted() -> None:
    """aiohttp quotes the first 100 bytes of an oversized header and adds `...`; a provider
    cuts its error text: the head of the key left at such a cut is redacted, a shorter piece
    or one in the middle of a text is not."""
    long_key = "sk-proj-" + "Zq9xW2vL8mN4bR6tY1uI3oP5aS7dF0gH2jK4lZ6xC8vB1nM3qW5eR7tY9uI1oP3"
    register_secret(long_key)
    cut = f"b'Bearer {long_key[:60]}...'"
    assert redact(cut) == f"b'Bearer {REDACTED}...'"
    assert redact(f"error: {long_key[:30]}") == f"error: {REDACTED}"
    assert redact(f"{long_key[:30]}\u2026") == f"{REDACTED}\u2026"
    assert redact(f"{long_key[:11]}...") == f"{long_key[:11]}..."
    assert redact(f"{long_key[:30]} and more") == f"{long_key[:30]} and more"


def test_redact_tree_catches_a_key_split_by_invisible_characters() -> None:
    """A listing that splits the key with a zero-width space or a tab (free text keeps tabs,
    and a zero-width space is no control character) leaves no key; values without a secret
    keep their characters."""
    split = {"zw": KEY[:4] + "\u200b" + KEY[4:], "tab": KEY[:4] + "\t" + KEY[4:], "ok": "a\tb"}
    assert redact_tree({"metadata": split}) == {
        "metadata": {"zw": REDACTED, "tab": REDACTED, "ok": "a\tb"}
    }
