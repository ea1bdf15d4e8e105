"""The audit hash chain: sealing as docs/evidence.md defines it, and spotting tampering."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.audit.hashchain import GENESIS, seal
from retention.audit.verifier import Anchors, verify_records


def _chain(n: int) -> list[dict[str, object]]:
    """A sound chain of n records."""
    records, prev = [], GENESIS
    for seq in range(1, n + 1):
        record = seal(
            {"event": "response.deleted", "response_id": f"r{seq}", "ts": "t"},
            chain="main",
            seq=seq,
            prev_hash=prev,
        )
        prev = record["hash"]
        records.append(record)
    return records


def test_hash_is_the_spec_recipe() -> None:
    """hash = sha256 of the sorted, compact, non-ASCII-preserving JSON without `hash`."""
    record = seal({"event": "x", "error": "naïve"}, chain="main", seq=1, prev_hash=GENESIS)
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert record["hash"] == hashlib.sha256(text.encode()).hexdigest()
    assert record["prev_hash"] == "0" * 64


def test_sound_chain_verifies() -> None:
    """An untouched chain has no fault."""
    verdict = verify_records(_chain(5), Anchors())
    assert verdict.sound and verdict.chains["main"].last_seq == 5


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        (lambda c: c[2].update(response_id="other"), "modified"),
        (lambda c: c.pop(2), "missing"),
        (lambda c: c.insert(1, c.pop(3)), "missing"),
    ],
)
def test_tampering_is_found(tamper, kind: str) -> None:  # type: ignore[no-untyped-def]
    """An edited, deleted or moved record is the first fault reported."""
    records = _chain(6)
    tamper(records)
    fault = verify_records(records, Anchors()).fault
    assert fault is not None and fault.kind == kind


def test_rehashed_edit_breaks_the_link() -> None:
    """Editing a record and recomputing its hash still breaks the next record's prev_hash."""
    records = _chain(4)
    records[1]["response_id"] = "forged"
    body = {k: v for k, v in records[1].items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    records[1]["hash"] = hashlib.sha256(text.encode()).hexdigest()
    fault = verify_records(records, Anchors()).fault
    assert fault is not None and fault.seq == 3 and fault.kind == "broken_link"


def test_floats_never_enter_the_trail() -> None:
    """A float would hash differently across languages, so sealing one is refused."""
    with pytest.raises(TypeError):
        seal({"event": "x", "details": {"lag": 1.5}}, chain="main", seq=1, prev_hash=GENESIS)


@given(
    st.dictionaries(
        st.sampled_from(
            ["response_id", "error", "policy", "event", "details", "http_status", "actor"]
        ),
        st.text(max_size=20)
        | st.integers()
        | st.none()
        | st.dictionaries(st.text(max_size=12), st.text(max_size=12) | st.integers(), max_size=3),
        max_size=7,
    )
)
def test_the_line_is_the_canonical_record(body: dict) -> None:  # type: ignore[type-arg]
    """The line written once equals the canonical JSON of the sealed record, whatever it holds."""
    from retention.audit.hashchain import canonical, seal_line

    record, line = seal_line(body, chain="main", seq=3, prev_hash=GENESIS)
    assert line == canonical(record)
