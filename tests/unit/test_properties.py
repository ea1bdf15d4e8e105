"""Property tests: no input makes the parsers crash; they answer or refuse cleanly."""

from __future__ import annotations

import contextlib
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from retention.config.policyfile import parse_policies
from retention.core.record_input import validate_rows
from retention.errors import ConfigError, UsageError

scalars = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.floats(allow_nan=False)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
policy_keys = st.sampled_from(
    [
        "version",
        "default",
        "policies",
        "holds",
        "ttl",
        "name",
        "match",
        "metadata",
        "model",
        "ids",
        "keep_chains_intact",
        "provider",
    ]
)
policy_like = st.recursive(
    scalars | st.sampled_from(["24h", "7d", "P1D", "3 parsecs", "resp_1", "../x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(policy_keys, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300)
@given(policy_like)
def test_any_policies_document_loads_or_is_refused(doc: Any) -> None:
    """Whatever the YAML holds, the result is a PolicySet or a ConfigError, nothing else."""
    text = yaml.safe_dump(doc)
    try:
        parse_policies(text, "p.yaml")
    except ConfigError as exc:
        assert exc.message.startswith("p.yaml")


@settings(max_examples=300)
@given(st.lists(json_like, max_size=6))
def test_any_ingest_body_items_are_accepted_or_rejected(items: list[Any]) -> None:
    """Each item of an ingest body is either a valid record or a reject naming its index."""
    valid, rejects = validate_rows(enumerate(items), providers={"fireworks"})
    assert len(valid) + len(rejects) == len(items)
    assert all(0 <= r.line < len(items) for r in rejects)


@given(st.text(max_size=40))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    """Durations never crash with anything but ValueError."""
    from retention.core.durations import parse_duration

    with contextlib.suppress(ValueError):
        parse_duration(text)


@given(st.text(max_size=30) | st.integers() | st.floats())
def test_any_value_is_a_time_or_an_input_error(value: Any) -> None:
    """Times parse or are refused as usage errors."""
    from retention.core.times import parse_time

    with contextlib.suppress(UsageError):
        parse_time(value)
