"""The vocabulary: each audit event name is written once in the code and listed for auditors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from retention.core.vocabulary import STATES, Event, MetaKey, Outcome, State

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "retention"
GUIDE = ROOT / "docs" / "auditors-guide.md"


def _string_constants(path: Path) -> set[str]:
    """Every string literal of a module (docstrings included: a name inside prose differs)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _guide_events() -> list[str]:
    """The event names in the first column of the guide's `## Audit events` table."""
    text = GUIDE.read_text()
    section = text.split("\n## Audit events\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\|\s*`([a-z_.]+)`\s*\|", section, re.M)


def test_each_event_name_is_a_literal_in_one_module_only():
    """An audit event name is spelled out in core/vocabulary.py and nowhere else in the code."""
    names = {event.value for event in Event}
    where: dict[str, list[str]] = {name: [] for name in names}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in names & _string_constants(path):
            where[name].append(str(path.relative_to(ROOT)))
    assert {n: w for n, w in where.items() if w != ["retention/core/vocabulary.py"]} == {}


def test_the_auditors_guide_lists_every_event_once():
    """docs/auditors-guide.md's table names exactly the events the code can write."""
    listed = _guide_events()
    assert sorted(listed) == sorted(set(listed)), "an event is listed twice"
    assert set(listed) == {event.value for event in Event}


def test_every_audit_event_is_written_through_the_vocabulary():
    """Each `tx.event(...)` in the code names its event as a member of `Event`, not a string."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []


def test_members_are_their_strings():
    """Members compare equal to the strings rows, JSON and audit records carry."""
    assert State.PENDING == "pending" and STATES[0] == "pending"
    assert {"deleted": 1}[Outcome.DELETED] == 1
    assert f"{Event.RESPONSE_DELETED}" == "response.deleted"
    assert MetaKey.LAST_SWEEP == "last_sweep"
