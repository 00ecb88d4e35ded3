"""Nova's Prometheus rules: promtool accepts them, synthetic series make alerts fire
(`deployments/observability/rules_test.yml`), every alert says how bad, for how long and
what to do, and every metric they query is one Nova's code declares.

The helpers that read metric names out of the code and out of PromQL serve the Grafana
dashboard's test too."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from deployments.observability import RULES_FILE
from deployments.stack.debian import ensure_prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES_TEST_FILE = RULES_FILE.with_name("rules_test.yml")
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
# Series that are not Nova's: Prometheus's own, and Ray Serve's that the dashboard shows
# (tests/deployments/test_prometheus.py finds these on the test stack).
PROMETHEUS_OWN = frozenset({"up", "ALERTS"})
RAY_OWN = frozenset({"ray_serve_deployment_replica_healthy"})

# -- metric names declared in Nova's code ---------------------------------------------------

_HISTOGRAM_SERIES = ("bucket", "sum", "count")


def exported_metric_names() -> set[str]:
    """The series names Nova's `ray.util.metrics` appear under in Prometheus: Ray prefixes
    `ray_`, and a histogram is its `_bucket`, `_sum` and `_count`."""
    names: set[str] = set()
    for package in ("actors", "deployments", "gateway", "ranking", "storage"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    names |= _declared(node)
    return names


def _declared(call: ast.Call) -> set[str]:
    func = call.func
    kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = call.args[0] if call.args else None
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return set()
    if not first.value.startswith("nova_"):
        return set()
    name = f"ray_{first.value}"
    if kind in ("Counter", "Gauge"):
        return {name}
    if kind == "Histogram":
        return {f"{name}_{series}" for series in _HISTOGRAM_SERIES}
    # deployments.workers._Counters(prefix, {field: description}, tags): one counter a field.
    if kind == "_Counters" and len(call.args) > 1 and isinstance(call.args[1], ast.Dict):
        return {
            f"{name}_{key.value}_total"
            for key in call.args[1].keys
            if isinstance(key, ast.Constant) and isinstance(key.value, str)
        }
    return set()


# -- metric names a PromQL expression reads -------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])[a-zA-Z_:][\w:]*(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in `expr`: identifiers left once strings, label matchers, ranges,
    grouping clauses and dashboard variables are cut, that are not functions (followed
    by a parenthesis) or keywords."""
    text = _STRINGS.sub("", expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING, _VARIABLES):
        text = pattern.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


# -- the rules ------------------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


@pytest.fixture(scope="module")
def promtool() -> str:
    ensure_prometheus()  # as the stack does: Debian's prometheus ships promtool
    return "promtool"


def test_promtool_accepts_the_rules(promtool: str) -> None:
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_synthetic_series_fire_the_outbox_dead_letter_and_error_rate_alerts(
    promtool: str,
) -> None:
    done = subprocess.run(
        [promtool, "test", "rules", str(RULES_TEST_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = yaml.safe_load(RULES_TEST_FILE.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tested
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert {"NovaOutboxOldestEventAge", "NovaDeadLetters", "NovaGatewayErrorRate"} <= fired


def test_every_alert_has_a_duration_a_severity_and_says_what_to_do() -> None:
    doc = OPERATIONS_DOC.read_text()
    assert "\n### Alerts\n" in doc  # the section runbook_url links to
    for alert in alerts():
        name = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", alert.get("for", "")), name
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        notes = alert["annotations"]
        assert notes["summary"], name
        assert len(notes["description"]) > 80, name
        assert notes["runbook_url"] == "docs/operations.md#alerts", name
        assert f"| `{name}` |" in doc, f"{name} is not in the alerts table of operations.md"


def test_the_issues_alerts_are_all_there() -> None:
    """Outbox age and backlog, consumer lag, dead letters, errors and p99 per operation,
    WebSocket connections, shard queue depth, Redis and PostgreSQL errors."""
    read = {name for alert in alerts() for name in promql_metric_names(alert["expr"])}
    assert {
        "nova:outbox_lag_seconds:max",
        "nova:outbox_pending:max",
        "nova:consumer_records_behind:max",
        "nova:dead_letters_pending:max",
        "nova:gateway_error_ratio:rate5m",
        "nova:gateway_request_ms:p99_5m",
        "nova:gateway_websockets:sum",
        "ray_nova_counter_shard_queue_depth",
        "ray_nova_timeline_shard_queue_depth",
        "nova:dependency_unavailable:rate5m",
    } <= read
    per_operation = [a for a in alerts() if a["alert"].startswith("NovaGateway")]
    assert all("operation" in a["expr"] for a in per_operation if "Replica" not in a["alert"])


def test_rules_read_only_metrics_nova_declares() -> None:
    known = exported_metric_names() | recorded_names() | PROMETHEUS_OWN
    unknown = {
        rule.get("record") or rule["alert"]: sorted(promql_metric_names(rule["expr"]) - known)
        for rule in rules()
    }
    assert {name: names for name, names in unknown.items() if names} == {}


def test_metric_names_are_read_from_the_code_as_prometheus_shows_them() -> None:
    names = exported_metric_names()
    assert {
        "ray_nova_gateway_requests_total",  # a Counter
        "ray_nova_outbox_lag_seconds",  # a Gauge
        "ray_nova_gateway_request_ms_bucket",  # a Histogram's series
        "ray_nova_relay_errors_total",  # one of deployments.workers._Counters
        "ray_nova_consumer_dead_lettered_total",
        "ray_nova_dependency_unavailable_total",
    } <= names
    assert "ray_nova_gateway_request_ms" not in names


def test_promql_names_skip_functions_labels_ranges_and_variables() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (operation, le) (rate(ray_nova_x_bucket{status=~"5.."}'
        "[$__rate_interval]))) > 1e3 and on (operation) nova:y:rate5m offset 5m"
    )
    assert promql_metric_names(expr) == {"ray_nova_x_bucket", "nova:y:rate5m"}
