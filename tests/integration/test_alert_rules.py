"""deploy/prometheus/alerts.yaml and deploy/grafana/retention.json ask only for metrics and
labels the daemon exports: each expression is parsed as PromQL, each metric it names is found
in the /metrics text of a ledger after a real sweep (deletions, failures, probes,
notifications), and each label it filters, groups or matches on, or that an alert's annotation
or a panel's legend shows, is one those series carry."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from retention.core.vocabulary import Outcome
from retention.daemon.metrics import Metrics
from retention.notify.notifier import Notifier
from retention.provider.probe import ProbeResult
from tests.integration.conftest import Env

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "retention.json"
# Grafana's own variables, as a query reaches Prometheus
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "6h"}


# what a label in an alert's annotation ({{ $labels.provider }}) or a legend ({{provider}}) is
ANNOTATION_LABEL = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
Exported = dict[str, set[str]]  # each series name /metrics shows, with its label names


def metric_names(expr: str) -> set[str]:
    """Every metric an expression selects; a ValueError when it is not valid PromQL (unknown
    function, unbalanced parentheses, a bad matcher)."""
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def label_faults(expr: str, exported: Exported) -> list[str]:
    """Each label an expression names that its series do not carry: a selector's matcher
    (`{code=~"5.."}`) a label of that metric, a `by`/`without` or `on`/`ignoring` label one
    of the expression it applies to; empty when every one is there."""
    faults: list[str] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name in exported:
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__" and matcher.name not in exported[node.name]:
                    faults.append(f"{node.name}{{{matcher.name}}}")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            inner = result_labels(node.expr, exported)
            faults.extend(
                f"by/without ({name})" for name in node.modifier.labels if name not in inner
            )
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            both = result_labels(node.lhs, exported) | result_labels(node.rhs, exported)
            matching = node.modifier.matching
            named = [
                *(matching.labels if matching is not None else []),
                *(node.modifier.group_labels or []),
            ]
            faults.extend(f"on/ignoring/group ({name})" for name in named if name not in both)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return faults


def result_labels(node: object, exported: Exported) -> set[str]:
    """The label names of the series an expression gives (as Prometheus keeps them through
    functions, aggregations and binary operators); empty for a scalar."""
    if isinstance(node, str):
        node = promql_parser.parse(node)
    if isinstance(node, promql_parser.VectorSelector):
        return set(exported.get(node.name or "", set()))
    if isinstance(node, promql_parser.MatrixSelector):
        return result_labels(node.vector_selector, exported)
    if isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        return result_labels(node.expr, exported)
    if isinstance(node, promql_parser.Call):
        if node.func.name == "histogram_quantile":
            return result_labels(node.args[1], exported) - {"le"}
        vectors = [arg for arg in node.args if not isinstance(arg, promql_parser.NumberLiteral)]
        return result_labels(vectors[0], exported) if vectors else set()
    if isinstance(node, promql_parser.AggregateExpr):
        inner = result_labels(node.expr, exported)
        if node.modifier is None:
            return set()
        if node.modifier.type == promql_parser.AggModifierType.By:
            return set(node.modifier.labels)
        return inner - set(node.modifier.labels)
    if isinstance(node, promql_parser.BinaryExpr):
        lhs, rhs = result_labels(node.lhs, exported), result_labels(node.rhs, exported)
        modifier, op = node.modifier, str(node.op)
        matching = modifier.matching if modifier is not None else None
        if op == "or":
            return lhs | rhs
        if modifier is None or matching is None or op in ("and", "unless"):
            return lhs if lhs or not _scalar(node.lhs) else rhs
        card, named = modifier.card, set(matching.labels)
        if card == promql_parser.VectorMatchCardinality.ManyToOne:  # group_left
            return lhs | set(modifier.group_labels or [])
        if card == promql_parser.VectorMatchCardinality.OneToMany:  # group_right
            return rhs | set(modifier.group_labels or [])
        if matching.type == promql_parser.LabelModifierType.Include:  # on (...)
            return lhs & named
        return lhs - named  # ignoring (...)
    return set()


def _scalar(node: object) -> bool:
    """Whether an expression is a scalar (a number, `time()`, `scalar(...)`)."""
    if isinstance(node, promql_parser.ParenExpr):
        return _scalar(node.expr)
    return isinstance(node, promql_parser.NumberLiteral) or (
        isinstance(node, promql_parser.Call) and node.func.name in ("time", "scalar")
    )


@pytest.fixture
def exported(make_env: Callable[..., Env]) -> Exported:
    """Every series name /metrics shows after a sweep that deletes, fails and probes, with a
    notification sink watched, and the label names its samples carry."""
    env = make_env(extra="notify:\n  - syslog: udp://127.0.0.1:9\n")
    for rid in ("gone1", "kept1"):
        env.standin.store.create({"id": rid})
    env.record("gone1", "kept1", "absent1")
    metrics = Metrics(env.ledger, lambda: datetime.now(UTC))
    probes: dict[str, ProbeResult] = {}
    metrics.watch_probes(probes)
    metrics.watch_notifier(Notifier(env.settings.notify))

    def probed(result: ProbeResult) -> None:
        probes[result.provider] = result
        env.standin.knobs.update({"keep_on_delete_rate": 0.5})

    report = env.sweep(hooks=dataclasses.replace(metrics.hooks(), probe=probed))
    assert sum(report.total(o) for o in (Outcome.DELETED, Outcome.FAILED, Outcome.ABSENT)) == 3
    metrics.sweep_duration.observe(0.5)
    names: Exported = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _alert_rules() -> list[dict[str, object]]:
    """Every rule of every group."""
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_targets() -> list[tuple[str, str]]:
    """Every target of every panel: its expression, with Grafana's variables as Prometheus
    gets them, and its legend."""
    document = json.loads(DASHBOARD.read_text())
    targets = []
    for panel in document["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"an unknown variable in {target['expr']!r}"
            targets.append((expr, target.get("legendFormat", "")))
    return targets


def test_the_alert_rules_parse_and_ask_only_for_exported_metrics(exported: Exported) -> None:
    """Each rule has a name, a valid PromQL expression over exported metrics and their labels
    only (annotations too), a valid `for`, a severity and a summary; the rules cover the
    faults operators must see."""
    rules = _alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    used: set[str] = set()
    for rule in rules:
        expr = str(rule["expr"])
        names = metric_names(expr)
        assert names, rule["alert"]
        assert names <= exported.keys(), f"{rule['alert']}: not exported: {names - exported.keys()}"
        assert not label_faults(expr, exported), f"{rule['alert']}: {label_faults(expr, exported)}"
        shown = set(ANNOTATION_LABEL.findall(json.dumps(rule["annotations"])))
        missing = shown - result_labels(expr, exported)
        assert not missing, f"{rule['alert']}: annotations show labels it lacks: {missing}"
        used |= names
        if "for" in rule:
            promql_parser.parse_duration(str(rule["for"]))
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]  # type: ignore[index]
    assert {
        "retention_overdue_records",
        "retention_last_sweep_timestamp_seconds",
        "retention_provider_requests_total",
        "retention_provider_probe_ok",
        "retention_deletions_total",
        "retention_erasures_overdue",
    } <= used


def test_the_dashboard_loads_and_asks_only_for_exported_metrics(exported: Exported) -> None:
    """The dashboard is JSON with unique panel ids, each target valid PromQL over exported
    metrics and their labels, each legend showing labels its series carry, and every figure
    the operator needs on it."""
    document = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for expr, legend in _dashboard_targets():
        names = metric_names(expr)
        assert names <= exported.keys(), f"{expr}: not exported: {names - exported.keys()}"
        assert not label_faults(expr, exported), f"{expr}: {label_faults(expr, exported)}"
        missing = set(LEGEND_LABEL.findall(legend)) - result_labels(expr, exported)
        assert not missing, f"{expr}: the legend {legend!r} shows labels it lacks: {missing}"
        used |= names
    assert {
        "retention_deletions_total",
        "retention_ledger_records",
        "retention_overdue_records",
        "retention_deletion_lag_seconds_bucket",
        "retention_sweep_duration_seconds_bucket",
        "retention_provider_requests_total",
        "retention_last_sweep_timestamp_seconds",
        "retention_erasures_open",
    } <= used


def test_a_name_the_daemon_does_not_export_is_caught(exported: Exported) -> None:
    """The check itself: a misspelt metric or label, a grouping or a legend by a label the
    series lack, and broken PromQL are all found."""
    assert metric_names("rate(retention_deletion_total[5m])") - exported.keys() == {
        "retention_deletion_total"
    }
    assert label_faults('rate(retention_deletions_total{outcom="failed"}[5m])', exported) == [
        "retention_deletions_total{outcom}"
    ]
    assert label_faults("sum by (provder) (rate(retention_deletions_total[5m]))", exported) == [
        "by/without (provder)"
    ]
    assert label_faults(
        "sum by (provider) (rate(retention_deletions_total[5m])) / on (sink)"
        " sum by (provider) (rate(retention_provider_requests_total[5m]))",
        exported,
    ) == ["on/ignoring/group (sink)"]
    assert not label_faults(
        'sum by (provider, code) (rate(retention_provider_requests_total{code=~"5.."}[5m]))',
        exported,
    )
    assert result_labels("sum by (sink) (retention_notify_spooled) > 0", exported) == {"sink"}
    assert result_labels("time() - max(retention_last_sweep_timestamp_seconds)", exported) == set()
    quantile = (
        "histogram_quantile(0.5, sum by (le) (rate(retention_deletion_lag_seconds_bucket[5m])))"
    )
    assert result_labels(quantile, exported) == set()
    with pytest.raises(ValueError):
        metric_names("sum(rate(retention_deletions_total[5m])")
    with pytest.raises(ValueError):
        metric_names("no_such_function(retention_overdue_records)")
    assert {"retention_notify_spooled", "retention_notify_sent_total"} <= exported.keys()
    assert {"sink"} <= exported["retention_notify_spooled"]
    assert {"code", "provider"} <= exported["retention_provider_requests_total"]
