"""The Grafana dashboard operators import: it parses, asks for its Prometheus through a
datasource variable, and queries only metrics Nova declares or rules.yml records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from deployments.observability import GRAFANA_DASHBOARD
from tests.deployments.test_prometheus_rules import (
    PROMETHEUS_OWN,
    RAY_OWN,
    exported_metric_names,
    promql_metric_names,
    recorded_names,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GRAFANA_DASHBOARD.read_text())
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside a collapsed row


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every PromQL expression: panel targets and annotations."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']}", annotation["expr"]


def test_it_asks_for_a_prometheus_through_a_datasource_variable() -> None:
    dashboard = _dashboard()
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_every_query_reads_metrics_nova_declares_or_rules_record() -> None:
    known = exported_metric_names() | recorded_names() | PROMETHEUS_OWN | RAY_OWN
    queries = list(_queries(_dashboard()))
    assert len(queries) >= 15
    unknown = {
        where: sorted(promql_metric_names(expr) - known)
        for where, expr in queries
        if promql_metric_names(expr) - known
    }
    assert unknown == {}
    assert all(promql_metric_names(expr) for _, expr in queries)


def test_it_shows_what_operators_watch() -> None:
    read = {name for _, expr in _queries(_dashboard()) for name in promql_metric_names(expr)}
    assert {
        "nova:gateway_requests:rate5m",
        "nova:gateway_error_ratio:rate5m",
        "nova:gateway_request_ms:p99_5m",
        "nova:outbox_pending:max",
        "nova:outbox_lag_seconds:max",
        "nova:consumer_records_behind:max",
        "nova:dead_letters_pending:max",
        "nova:gateway_websockets:sum",
        "ray_nova_counter_shard_queue_depth",
        "ray_nova_timeline_shard_queue_depth",
        "nova:dependency_unavailable:rate5m",
        "ray_serve_deployment_replica_healthy",
    } <= read


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert not cells & taken, panel["title"]
        taken |= cells
