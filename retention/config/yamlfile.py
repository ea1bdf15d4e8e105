"""Read YAML keeping the line of every key, so that errors can say `file:line: key: ...`.

Only values every later step can use get through: a string holding a lone surrogate or a
control character other than tab and newline (which YAML escapes such as `"\\ud800"` and
`"\\0"` can write) and a non-finite number (`.nan`, `.inf`) are refused at their line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from retention.core.quoting import quote
from retention.core.text import text_flaw
from retention.errors import ConfigError


class Node(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[str, int]


class Seq(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers its own line and each item's line."""

    line: int
    item_lines: list[int]


class _Loader(yaml.SafeLoader):
    """SafeLoader building Node and Seq, refusing duplicate keys."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> Node:
    """Build a Node; a key given twice is an error, not a silent overwrite."""
    result = Node()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise ConfigError(
                f"keys must be strings, got {quote(key)}", file=loader.name, line=line
            )
        if key in result:
            raise ConfigError("key given twice", file=loader.name, line=line, key=key)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    """Build a Seq remembering item lines."""
    result = Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _string(loader: _Loader, node: yaml.ScalarNode) -> str:
    """A string, refused when it cannot be stored or printed."""
    value = loader.construct_yaml_str(node)
    flaw = text_flaw(value)
    if flaw is not None:
        raise ConfigError(f"{quote(value)} {flaw}", file=loader.name, line=_line(node))
    return value


def _float(loader: _Loader, node: yaml.ScalarNode) -> float:
    """A number, refused when it is not finite."""
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        raise ConfigError(
            f"{quote(node.value)} is not a finite number", file=loader.name, line=_line(node)
        )
    return value


def _line(node: yaml.Node) -> int:
    """The 1-based line of `node`."""
    return node.start_mark.line + 1


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)
_Loader.add_constructor("tag:yaml.org,2002:str", _string)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)


def load_yaml(path: Path) -> Any:
    """Parse `path`; unreadable or malformed files raise ConfigError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(path)) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str) -> Any:
    """Parse YAML text named `name` (for messages)."""
    try:
        loader = _Loader(text)  # checks every character of `text` first
    except yaml.reader.ReaderError as exc:  # one YAML does not allow (NUL, most controls)
        at = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"invalid YAML: unacceptable character U+{exc.character:04X}", file=name, line=at
        ) from None
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=name) from None
    finally:
        loader.dispose()


class Reader:
    """Typed access to one YAML mapping, raising ConfigError with file, line and dotted key."""

    def __init__(self, node: Any, *, file: str, path: str = "", line: int | None = None) -> None:
        self.file, self.path = file, path
        self.line = getattr(node, "line", line)
        if node is None:
            node = Node()
            node.line, node.key_lines = line or 1, {}
        if not isinstance(node, dict):
            raise ConfigError("expected a mapping", file=file, line=self.line, key=path or None)
        self.node: dict[str, Any] = node

    def key(self, name: str) -> str:
        """The dotted name of a key under this mapping."""
        return f"{self.path}.{name}" if self.path else name

    def line_of(self, name: str) -> int | None:
        """The line of `name`, or of this mapping when the key is absent."""
        return getattr(self.node, "key_lines", {}).get(name, self.line)

    def error(self, name: str, message: str) -> ConfigError:
        """A ConfigError pointing at key `name`."""
        return ConfigError(message, file=self.file, line=self.line_of(name), key=self.key(name))

    def only(self, *allowed: str) -> None:
        """Refuse unknown keys (a typo must never fall back silently to a default)."""
        for name in self.node:
            if name not in allowed:
                raise self.error(name, f"unknown key; expected one of: {', '.join(allowed)}")

    def child(self, name: str, *, required: bool = False) -> Reader:
        """The mapping under `name`."""
        if name not in self.node and required:
            raise self.error(name, "required")
        return Reader(
            self.node.get(name), file=self.file, path=self.key(name), line=self.line_of(name)
        )

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        """The value of `name`, checked to be of `kind`."""
        if name not in self.node or self.node[name] is None:
            if required:
                raise self.error(name, "required")
            return default
        value = self.node[name]
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            raise self.error(name, f"expected {_kind_name(kind)}, got {quote(value)}")
        if not isinstance(value, kind):
            raise self.error(name, f"expected {_kind_name(kind)}, got {quote(value)}")
        return value

    def convert(self, name: str, parse: Any, default: Any = None, *, required: bool = False) -> Any:
        """The value of `name` passed through `parse`; its ValueError becomes a ConfigError."""
        if name not in self.node or self.node[name] is None:
            if required:
                raise self.error(name, "required")
            return default
        try:
            return parse(self.node[name])
        except (ValueError, TypeError) as exc:
            raise self.error(name, str(exc)) from None


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    """`kind` as a tuple of types."""
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    """A readable name for `kind`."""
    names = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        dict: "a mapping",
        list: "a list",
        float: "a number",
    }
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))
