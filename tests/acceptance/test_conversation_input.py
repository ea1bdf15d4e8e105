"""Bad input about conversations and chat completions, as users type it: one clear line,
exit 2, nothing written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.helpers import cli, write_config

RESPONSE_POLICY_WITH_TTL_FROM = """\
version: 1
default: {ttl: 30d}
policies:
  - name: chats
    ttl: 1d
    ttl_from: last_activity
"""
UNKNOWN_OBJECT_POLICY = """\
version: 1
default: {ttl: 30d}
policies:
  - name: chats
    ttl: 1d
    match: {object: thread}
"""


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        (RESPONSE_POLICY_WITH_TTL_FROM, "policies.yaml:6: policies[0].ttl_from: `ttl_from: "),
        (UNKNOWN_OBJECT_POLICY, "policies.yaml:6: policies[0].match.object: expected one of"),
    ],
)
def test_a_policy_that_cannot_mean_anything_is_refused(
    workdir: Path, policies: str, expected: str
) -> None:
    """`ttl_from: last_activity` on a policy that does not match conversations, or an unknown
    `object`: exit 2 with the file, line and key, and nothing recorded."""
    write_config(workdir, "http://127.0.0.1:9/v1", policies=policies)
    result = cli("record", "resp_1", cwd=workdir)
    assert result.returncode == 2
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with sqlite3.connect(workdir / "retention.db") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (0,)


@pytest.mark.parametrize(
    ("kind", "given"), [("conversation", "conv_1/items"), ("chat.completion", "chatcmpl-1/x")]
)
def test_an_id_with_a_slash_is_refused(workdir: Path, kind: str, given: str) -> None:
    """`record --object KIND` of an ID with a `/`: one line, exit 2, nothing recorded."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    result = cli("record", "--object", kind, given, cwd=workdir)
    assert result.returncode == 2 and f"invalid response ID '{given}'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli("ls", "-o", "json", cwd=workdir).stdout.strip() in ("[]", "")


def test_an_unknown_object_in_an_import_names_its_line(workdir: Path) -> None:
    """An import line with `object: thread`: exit 2 naming the file, line and field."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    (workdir / "in.jsonl").write_text(
        '{"id": "c_1", "object": "conversation"}\n{"id": "c_2", "object": "thread"}\n'
    )
    result = cli("import", "in.jsonl", cwd=workdir)
    assert result.returncode == 2
    assert (
        "in.jsonl:2: object: expected one of response, conversation, chat.completion, got "
        "'thread'" in result.stderr
    )
    listed = cli("ls", "-o", "json", cwd=workdir)
    assert listed.stdout.strip() in ("[]", "")
