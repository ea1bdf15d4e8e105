"""Read `policies.yaml` into a frozen PolicySet; every error names file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retention.config.yamlfile import Reader, load_yaml, parse_yaml
from retention.core.durations import parse_duration
from retention.core.ids import is_valid_id
from retention.core.policies import Hold, Match, Policy, PolicySet
from retention.core.quoting import quote
from retention.core.record_input import object_flaw
from retention.core.vocabulary import Basis, ObjectKind
from retention.errors import ConfigError


def load_policies(path: Path) -> PolicySet:
    """Parse and validate a policies file."""
    return _build(load_yaml(path), str(path))


def parse_policies(text: str, name: str = "<policies>") -> PolicySet:
    """Parse and validate policies given as text."""
    return _build(parse_yaml(text, name), name)


def _build(doc: Any, file: str) -> PolicySet:
    """Validate the parsed document into a PolicySet."""
    if doc is None:
        raise ConfigError(
            "the file is empty; it needs `version: 1` and `default: {ttl: ...}`", file=file
        )
    top = Reader(doc, file=file)
    top.only("version", "default", "policies", "holds")
    version = top.get("version", int, required=True)
    if version != 1:
        raise top.error("version", f"unsupported version {version}; this release reads 1")
    default_reader = top.child("default", required=True)
    default_reader.only("ttl", "keep_chains_intact")
    default = Policy(
        name="default",
        ttl=default_reader.convert("ttl", parse_duration, required=True),
        line=default_reader.line,
        keep_chains_intact=default_reader.get("keep_chains_intact", bool, False),
    )
    policies = tuple(_policies(top))
    holds = tuple(_holds(top))
    return PolicySet(default=default, policies=policies, holds=holds, source=file)


def _items(top: Reader, name: str) -> list[Reader]:
    """Readers for each mapping in the list under `name`."""
    items = top.get(name, list, default=[])
    lines = getattr(items, "item_lines", [top.line_of(name)] * len(items))
    return [
        Reader(item, file=top.file, path=f"{name}[{i}]", line=lines[i])
        for i, item in enumerate(items)
    ]


def _policies(top: Reader) -> list[Policy]:
    """The ordered policies, names unique."""
    seen: set[str] = {"default"}
    result = []
    for item in _items(top, "policies"):
        item.only("name", "match", "ttl", "ttl_from", "keep_chains_intact")
        name = item.get("name", str, required=True)
        if name in seen:
            raise item.error("name", f"policy name {quote(name)} is used twice (or is 'default')")
        seen.add(name)
        match = _match(item.child("match"))
        result.append(
            Policy(
                name=name,
                ttl=item.convert("ttl", parse_duration, required=True),
                match=match,
                line=item.line,
                keep_chains_intact=item.get("keep_chains_intact", bool, False),
                ttl_from=_ttl_from(item, match),
            )
        )
    return result


TTL_FROM = (Basis.CREATED_AT, Basis.LAST_ACTIVITY)


def _ttl_from(item: Reader, match: Match) -> str:
    """What the TTL counts from; `last_activity` only where the policy matches conversations
    alone (a response has no activity after its creation)."""
    value = item.get("ttl_from", str, Basis.CREATED_AT.value)
    if value not in TTL_FROM:
        raise item.error("ttl_from", f"expected one of {', '.join(TTL_FROM)}, got {quote(value)}")
    if value == Basis.LAST_ACTIVITY and match.object != ObjectKind.CONVERSATION:
        raise item.error(
            "ttl_from",
            "`ttl_from: last_activity` means something only for conversations: add "
            "`object: conversation` to this policy's match",
        )
    return value


def _holds(top: Reader) -> list[Hold]:
    """Legal holds: each names IDs, a match, or both."""
    seen: set[str] = set()
    result = []
    for item in _items(top, "holds"):
        item.only("name", "ids", "match")
        name = item.get("name", str, required=True)
        if name in seen:
            raise item.error("name", f"hold name {quote(name)} is used twice")
        seen.add(name)
        ids = item.get("ids", list, default=[])
        for index, value in enumerate(ids):
            if not is_valid_id(value):
                line = getattr(ids, "item_lines", [item.line_of("ids")] * len(ids))[index]
                raise ConfigError(
                    f"invalid response ID {quote(value)}",
                    file=top.file,
                    line=line,
                    key=item.key(f"ids[{index}]"),
                )
        match = _match(item.child("match")) if "match" in item.node else None
        if not ids and match is None:
            raise item.error("name", "a hold needs `ids`, `match`, or both")
        result.append(Hold(name=name, ids=frozenset(ids), match=match))
    return result


def _match(reader: Reader) -> Match:
    """A Match from its mapping (all conditions must hold)."""
    reader.only("object", "provider", "account", "model", "metadata")
    meta = reader.child("metadata")
    for key, value in meta.node.items():
        if not isinstance(value, str):  # YAML would turn 0113 into 75 and 12:30 into 750
            hint = "" if isinstance(value, dict | list) else f'; quote it: "{quote(value)}"'
            raise meta.error(key, f"expected a string, got {quote(value)}{hint}")
    kind = reader.get("object", str)
    if kind is not None and (flaw := object_flaw(kind)) is not None:
        raise reader.error("object", flaw)
    return Match(
        object=kind,
        provider=reader.get("provider", str),
        account=reader.get("account", str),
        model=reader.get("model", str),
        metadata={k: str(v) for k, v in meta.node.items()},
    )
