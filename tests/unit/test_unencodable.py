"""Input that cannot be stored is refused at the door, naming the field (issue 13, item 6),
and creation times in the future are refused (item 7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retention.config.policyfile import parse_policies
from retention.core.record_input import (
    csv_rows,
    from_mapping,
    jsonl_rows,
    loads,
    metadata_of,
    parse_meta_args,
    validate_rows,
)
from retention.core.text import name_flaw, printable, text_flaw
from retention.core.times import FUTURE_SKEW, refuse_future
from retention.discover import to_record
from retention.errors import ConfigError, InputError, UsageError

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"id": "a", "model": "\ud800"}, "model: '\\ud800' is not valid Unicode"),
        ({"id": "a", "model": "gpt\x00"}, "model: 'gpt\\x00' holds a control character, U+0000"),
        ({"id": "a", "model": "a\nb"}, "model: 'a\\nb' holds a control character, U+000A"),
        ({"id": "a", "provider": "fw\udcff"}, "provider: 'fw\\udcff' is not valid Unicode"),
        ({"id": "a", "metadata": {"k\x07": "v"}}, "metadata: key 'k\\x07' holds a control"),
        ({"id": "a", "metadata": {"\udc80": "v"}}, "metadata: key '\\udc80' is not valid"),
        ({"id": "a", "metadata": {"k": "v\ud800"}}, "metadata.k: 'v\\ud800' is not valid"),
        ({"id": "a", "metadata": {"k": "v\x00"}}, "metadata.k: 'v\\x00' holds a control"),
        ({"id": "a", "metadata": {"k": float("nan")}}, "metadata.k: nan is not a finite number"),
        ({"id": "a", "metadata": {"k": float("inf")}}, "metadata.k: inf is not a finite number"),
        ({"id": "a", "metadata": {"k": 2**63}}, "metadata.k: 9223372036854775808 is too large"),
        ({"id": "a", "metadata": {"k": -(2**70)}}, "is too large a number"),
        ({"id": "a", "metadata": {"k": 10**5000}}, "a very large integer is too large"),
        ({"id": "a", "created_at": float("nan")}, "created_at: expected"),
        ({"id": "a", "created_at": 10**5000}, "created_at: expected"),
        ({"id": "a", "created_at": "2026-11-25\x00"}, "created_at: expected"),
        ({"id": "a\ud800"}, "invalid response ID 'a\\ud800'"),
        ({"id": "a", "\ud800": 1}, "unknown field '\\ud800'"),
    ],
)
def test_unstorable_fields_are_refused_naming_them(item: dict[str, object], fragment: str) -> None:
    """Each unstorable value is a usage error naming its field, with the value escaped."""
    with pytest.raises(UsageError) as caught:
        from_mapping(item)
    assert fragment in caught.value.message
    caught.value.message.encode("utf-8")  # the message itself can always be printed


def test_metadata_values_keep_tab_newline_and_unicode() -> None:
    """Free text keeps tab, newline and any valid Unicode; numbers become their text."""
    meta = metadata_of({"note": "line 1\nline 2\tend", "who": "José 😀", "n": 2**63 - 1, "f": 0.5})
    assert meta == {
        "note": "line 1\nline 2\tend",
        "who": "José 😀",
        "n": "9223372036854775807",
        "f": "0.5",
    }


def test_surrogate_pairs_are_valid_unicode() -> None:
    """A JSON surrogate pair is one astral character, which is fine; half of one is not."""
    assert from_mapping(loads('{"id": "a", "model": "m\\ud83d\\ude00"}')).model == "m😀"
    with pytest.raises(InputError, match="lone surrogate"):
        from_mapping(loads('{"id": "a", "model": "m\\ud83d"}'))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": "a", "metadata": {"k": NaN}}', "NaN is not a JSON number"),
        ('{"id": "a", "metadata": {"k": -Infinity}}', "-Infinity is not a JSON number"),
        ('{"id": "a", "metadata": {"k": 1e400}}', "the number '1e400' is too large"),
        ('{"id": "a", "created_at": -1E+999}', "the number '-1E+999' is too large"),
    ],
)
def test_non_finite_json_numbers_are_refused_with_their_line(line: str, reason: str) -> None:
    """NaN, Infinity and numbers no float holds make the line invalid JSON, by number."""
    rows = list(jsonl_rows(["{}", line]))
    valid, rejects = validate_rows(rows)
    assert [(r.line, r.error) for r in rejects] == [
        (1, "id: required"),
        (2, f"invalid JSON: {reason}"),
    ]
    assert not valid


def test_csv_cells_with_nul_or_escaped_surrogates_are_refused_by_line() -> None:
    """A NUL in a CSV cell, or a surrogate escaped in its metadata JSON, names the line."""
    lines = [
        "id,model,metadata,metadata.team\n",
        "ok_1,m,,x\n",
        "ok_2,m\x00,,x\n",
        'ok_3,m,"{""k"": ""\\ud800""}",x\n',
        'ok_4,m,"{""k"": NaN}",x\n',
        'ok_5,m,"[[""k"", ""v""]]",x\n',
        "ok_6,m,,x\x00\n",
    ]
    valid, rejects = validate_rows(csv_rows(lines))
    assert [r.response_id for r in valid] == ["ok_1"]
    assert [r.line for r in rejects] == [3, 4, 5, 6, 7]
    assert "model: 'm\\x00' holds a control character" in rejects[0].error
    assert "metadata.k: '\\ud800' is not valid Unicode" in rejects[1].error
    assert "metadata: invalid JSON: NaN is not a JSON number" in rejects[2].error
    assert "metadata: expected a JSON object" in rejects[3].error
    assert "metadata.team: 'x\\x00' holds a control character" in rejects[4].error


def test_meta_arguments_name_the_option() -> None:
    """`--meta` pairs from argv that are not UTF-8 (surrogate-escaped bytes) are refused."""
    with pytest.raises(InputError, match=r"^--meta: key 'k\\udcff' is not valid Unicode"):
        parse_meta_args(["k\udcff=v"])
    with pytest.raises(InputError, match=r"^--meta\.k: 'v\\udcff' is not valid Unicode"):
        parse_meta_args(["k=v\udcff"])


def test_created_at_in_the_future_is_refused_beyond_the_skew() -> None:
    """Up to FUTURE_SKEW ahead of `now` is clock skew; more is refused, naming the field."""
    assert from_mapping({"id": "a", "created_at": "2199-12-31"}).created_at is not None
    near = T0 + FUTURE_SKEW
    assert from_mapping({"id": "a", "created_at": near.isoformat()}, now=T0).created_at == near
    with pytest.raises(InputError, match=r"^created_at: 2199-12-31T00:00:00\.000000Z is in the"):
        from_mapping({"id": "a", "created_at": "2199-12-31"}, now=T0)
    valid, rejects = validate_rows(
        [(1, {"id": "a", "created_at": (near + timedelta(seconds=1)).timestamp()})], now=T0
    )
    assert not valid and "created_at:" in rejects[0].error and "future" in rejects[0].error
    with pytest.raises(InputError, match=r"^--created-at: "):
        refuse_future(T0 + timedelta(hours=1), T0, field="--created-at")


def test_discovery_escapes_what_it_cannot_store_and_keeps_the_id() -> None:
    """A listed item with an unstorable model, a future created_at or unstorable metadata is
    still tracked: its text escaped, the future time left out."""
    item = {"id": "r1", "model": "m\ud800", "created_at": int((T0 + timedelta(days=9)).timestamp())}
    record = to_record(item, "fw", T0)
    assert record is not None and record.model == "m\\ud800" and record.created_at is None
    past = int((T0 - timedelta(days=1)).timestamp())
    assert to_record({"id": "r1", "created_at": past}, "fw", T0).created_at is not None  # type: ignore[union-attr]
    odd = to_record({"id": "r1", "metadata": {"k": float("nan")}}, "fw", T0)
    assert odd is not None and odd.metadata == {"k": "NaN"}


@pytest.mark.parametrize(
    ("yaml_text", "line", "fragment"),
    [
        ('version: 1\ndefault: {ttl: 30d}\npolicies:\n  - name: "p\\ud800"\n', 4, "lone surrogate"),
        ('version: 1\ndefault: {ttl: 30d}\npolicies:\n  - name: "p\\0"\n', 4, "U+0000"),
        ("version: 1\ndefault: {ttl: 30d}\nholds:\n  - name: h\n    ids: [.nan]\n", 5, "finite"),
        ('version: 1\ndefault: {ttl: "\\U0000dfff"}\n', 2, "lone surrogate"),
        ('version: 1\n"\\udcff": 1\ndefault: {ttl: 30d}\n', 2, "lone surrogate"),
        ("version: 1\ndefault: {ttl: 30d}\n\x00\n", 3, "unacceptable character U+0000"),
        ("version: 1\ndefault:\n  ttl: 30d\x01\n", 3, "unacceptable character U+0001"),
    ],
)
def test_yaml_with_unstorable_values_is_refused_at_its_line(
    yaml_text: str, line: int, fragment: str
) -> None:
    """YAML escapes can write surrogates and NUL, and `.nan` is a float: each is refused with
    file:line, in one printable line."""
    with pytest.raises(ConfigError) as caught:
        parse_policies(yaml_text, "p.yaml")
    message = caught.value.message
    assert message.startswith(f"p.yaml:{line}: "), message
    assert fragment in message and "\n" not in message
    message.encode("utf-8")


def test_text_rules() -> None:
    """Names refuse every control character; free text allows tab, newline and CR."""
    assert name_flaw("accounts/fireworks/models/x-1") is None
    assert name_flaw("a\tb") is not None and text_flaw("a\tb\r\n") is None
    assert name_flaw("a\x85") is not None and text_flaw("a\x85") is None
    assert text_flaw("a\x7f") is not None and text_flaw("\ud800") is not None
    assert printable("k\ud800é") == "k\\ud800é"
