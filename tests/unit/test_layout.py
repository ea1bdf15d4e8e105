"""The package layout holds: layers import only downwards, no cycle between packages, the audit
maths imports without the ledger's libraries, and no file leans on a document we do not ship."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "retention"

# The layers, lowest first. A unit is what follows `retention.`: a subpackage (`ledger`) or a
# root module (`errors`); `retention` is the package's own __init__ (its __version__). A unit
# may import units of its own layer or of lower ones, never of a higher one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("core", "errors", "retention")),
    ("audit", ("audit",)),  # the pure trail maths and the verifier
    ("support", ("redaction", "logs", "files")),
    ("config", ("config",)),
    ("ledger", ("ledger",)),
    ("services", ("services", "views", "evidence", "notify")),
    ("provider/sweep", ("provider", "sweep", "discover", "capture", "standin")),
    ("daemon/cli", ("daemon", "cli", "__main__")),
)
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = {unit: name for name, units in LAYERS for unit in units}

# imported in a subprocess with these blocked: the audit maths needs the standard library and
# `cryptography` alone (an auditor's machine)
PURE_AUDIT = (
    "retention.audit.verifier",
    "retention.audit.receipt_format",
    "retention.audit.erasure_receipt_format",
    "retention.audit.merkle",
    "retention.audit.hashchain",
    "retention.audit.checkpoint_message",
    "retention.audit.signatures",
)
BLOCKED = ("sqlalchemy", "structlog", "httpx", "yaml", "aiohttp")


def _module_name(path: Path) -> str:
    """`retention/ledger/db.py` -> `retention.ledger.db`; a package's __init__ -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    """The unit a `retention...` module belongs to: the first name after `retention.`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_ours(module: str) -> bool:
    """Whether `module` is `retention` or inside it."""
    return module == "retention" or module.startswith("retention.")


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` names, relative forms resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every `retention` module imported by `path` (anywhere in it: in functions, under
    TYPE_CHECKING), with its line. `from retention import logs` names `retention.logs`."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_ours(alias.name):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            if not _is_ours(target):
                continue
            if target != "retention":
                yield target, node.lineno
                continue
            for alias in node.names:  # `from retention import x`: a unit, or the package's own
                sub = PACKAGE / alias.name
                is_unit = sub.is_dir() or sub.with_suffix(".py").is_file()
                yield (f"retention.{alias.name}" if is_unit else "retention"), node.lineno


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where: `retention/x.py:12 imports retention.y`."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(_module_name(path))
        for target, line in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            edges[(source, _unit(target))].append(where)
    return edges


def _units() -> set[str]:
    """Every unit that has a file under retention/."""
    return {_unit(_module_name(path)) for path in PACKAGE.rglob("*.py")}


def _cycles(edges: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more units (Tarjan), each sorted."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        if source != target:
            graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _one_cycle(group: list[str], edges: dict[tuple[str, str], list[str]]) -> list[str]:
    """A closed path through `group` (first unit back to itself), by breadth-first search."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for source, target in sorted(edges):
            if source != node or target not in members or source == target:
                continue
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    return group  # unreachable for a strongly connected group


def test_layers_import_only_downwards_and_every_unit_has_a_layer() -> None:
    """Each unit imports only units of its own layer or lower ones; every unit is placed."""
    edges = _edges()
    known = _units() | {unit for _, unit in edges}
    unplaced = sorted(known - LEVEL.keys())
    assert not unplaced, (
        f"units in no layer: {', '.join(unplaced)}; place each in a layer of LAYERS in "
        f"{Path(__file__).name} (and in the README's layout section)"
    )
    wrong = [
        f"{where} ({source}, layer {LAYER_NAME[source]}, imports {target}, layer "
        f"{LAYER_NAME[target]})"
        for (source, target), places in sorted(edges.items())
        if LEVEL[target] > LEVEL[source]
        for where in places
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycle_between_units() -> None:
    """The unit-level import graph has no cycle (within a layer either)."""
    edges = _edges()
    report = []
    for group in _cycles(edges):
        path = _one_cycle(group, edges)
        report.append(f"cycle {' -> '.join(path)} (units involved: {', '.join(group)})")
        for source, target in pairwise(path):
            report.extend(f"  {where}" for where in edges[(source, target)])
    assert not report, "import cycles between units:\n" + "\n".join(report)


_BLOCKER = """
import importlib.abc, sys, traceback
BLOCKED = {blocked!r}
early = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if early:
    sys.exit(f"already imported before the blocker: {{early}}")
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the audit maths must not need it")
        return None
sys.meta_path.insert(0, Blocker())
for module in {modules!r}:
    try:
        __import__(module)
    except Exception:
        sys.exit(f"import {{module}} failed; the import chain:\\n" + traceback.format_exc())
import retention
others = {{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names)
print(retention.__file__)
print(" ".join(sorted(m for m in others if not m.startswith("_"))))
"""


def test_the_audit_maths_imports_without_the_ledger_libraries() -> None:
    """The audit maths imports with the ledger's and HTTP libraries blocked: cryptography only."""
    code = _BLOCKER.format(blocked=BLOCKED, modules=PURE_AUDIT)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    where, others = done.stdout.splitlines()
    assert Path(where).resolve() == PACKAGE / "__init__.py"  # this checkout's, not an installed one
    # C extensions (`_cffi_backend`) aside, nothing but the standard library and cryptography
    assert others.split() == ["cryptography", "retention"], others


def _tracked_files() -> list[Path]:
    """Every file git tracks in this repository that is still on disk."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    paths = [ROOT / name for name in listing.decode("utf-8", "surrogateescape").split("\0")]
    return [path for path in paths if path.is_file()]


def test_no_tracked_file_mentions_the_missing_document() -> None:
    """No tracked text file names the specification document the repository does not hold."""
    needle = ("SPEC" + ".md").encode()
    mentions = []
    for path in _tracked_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        for number, line in enumerate(data.splitlines(), start=1):
            if needle in line:
                mentions.append(f"{path.relative_to(ROOT)}:{number}")
    assert not mentions, "files mentioning it:\n" + "\n".join(mentions)
