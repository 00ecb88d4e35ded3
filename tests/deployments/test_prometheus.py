"""The embedded Prometheus on the test stack: it finds Ray's nodes through Ray's
service-discovery file, scrapes the gateway's `ray_nova_*` series, evaluates Nova's rules
without errors, and Ray's dashboard reaches it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from deployments.settings import Settings
from deployments.stack import Stack
from deployments.stack.processes import port_open
from deployments.stack.prometheus import Prometheus
from tests.deployments.test_prometheus_rules import RAY_OWN, exported_metric_names
from tests.support.graphql import post

pytestmark = pytest.mark.stack

# Ray's agents export every 10 s and Prometheus scrapes every 10 s and evaluates rules every
# 10 s: a series appears within about 30 s of its first sample.
WAIT_S = 120


@pytest.fixture(scope="module")
def prometheus(stack: Stack, deployed: Settings) -> Iterator[Prometheus]:
    server = Prometheus(stack.layout)
    started_here = not server.running()
    server.start()
    yield server
    if started_here:
        server.stop()


def _api(server: Prometheus, path: str, **params: str) -> Any:
    response = httpx.get(f"{server.url}/api/v1/{path}", params=params, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def _eventually(what: str, check: Callable[[], Any]) -> Any:
    """`check()`'s first truthy result, polled for at most `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    result = None
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    raise AssertionError(f"{what}: still {result!r} after {WAIT_S} s")


def test_listens_on_loopback_only_and_start_is_idempotent(prometheus: Prometheus) -> None:
    assert prometheus.url == f"http://127.0.0.1:{prometheus.port}"
    pid = prometheus.pid_file.read_text()
    prometheus.start()  # already running: the config is rewritten and reloaded, same process
    assert prometheus.running()
    assert prometheus.pid_file.read_text() == pid
    flags = _api(prometheus, "status/flags")
    assert flags["web.listen-address"] == f"127.0.0.1:{prometheus.port}"
    assert flags["storage.tsdb.path"] == str(prometheus.data_dir)


def _ask(http_url: str, times: int) -> None:
    async def ask() -> None:
        for _ in range(times):
            (await post(http_url, "{ __typename }")).ok()

    asyncio.run(ask())


def test_scrapes_the_gateways_series_through_rays_discovery_file(
    prometheus: Prometheus, http_url: str
) -> None:
    _ask(http_url, 5)

    def answered() -> float:
        # Each gateway replica publishes its counts every 5 s, Ray's agent exports every
        # 10 s: the five requests arrive in parts.
        series = _api(
            prometheus, "query", query='ray_nova_gateway_requests_total{operation="query"}'
        )["result"]
        return sum(float(s["value"][1]) for s in series)

    _eventually("five queries counted in Prometheus", lambda: answered() >= 5)
    targets = _api(prometheus, "targets")["activeTargets"]
    ray_targets = [t for t in targets if t["labels"]["job"] == "ray"]
    assert ray_targets
    assert all(t["discoveredLabels"]["__address__"].startswith("127.0.0.1:") for t in ray_targets)
    assert any(t["health"] == "up" for t in ray_targets)


def test_rules_are_loaded_and_evaluate_without_errors(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = _api(prometheus, "rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        # A rule's health is "unknown" until its group's first evaluation.
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = _eventually("every rule evaluated once", evaluated)
    failing = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert failing == {}
    names = {r["name"] for r in rules}
    assert {"NovaOutboxOldestEventAge", "NovaDeadLetters"} <= names
    assert "nova:gateway_requests:rate5m" in names


def test_recording_rules_turn_the_gateways_series_into_rates(
    prometheus: Prometheus, http_url: str
) -> None:
    def recorded(query: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = _api(prometheus, "query", query=query)["result"]
        return found

    _ask(http_url, 5)
    # A rate needs two scrapes of the counter; the rule then needs one evaluation.
    rate = _eventually(
        "the recorded request rate of queries",
        lambda: recorded('nova:gateway_requests:rate5m{operation="query"} > 0'),
    )
    assert set(rate[0]["metric"]) - {"__name__"} == {"operation"}  # Ray's labels summed away
    errors = recorded('nova:gateway_error_ratio:rate5m{operation="query"}')
    assert [float(e["value"][1]) for e in errors] == [0.0]
    assert recorded("nova:gateway_websockets:sum")


def test_rays_dashboard_reports_prometheus_reachable(prometheus: Prometheus, stack: Stack) -> None:
    token = stack.layout.path("secrets", "ray_auth_token").read_text().strip()
    url = f"http://127.0.0.1:{stack.layout.dashboard_port}/api/prometheus_health"
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert response.status_code == 200, response.text
    assert response.json()["result"] is True, response.text


def test_the_names_rules_and_dashboard_read_are_the_names_prometheus_has(
    prometheus: Prometheus,
) -> None:
    """The unit tests check rules.yml and the dashboard against names read from the code;
    here those names meet Prometheus: every Nova series it holds is one of them, and Ray's
    own series the dashboard reads are there."""
    held = set(_api(prometheus, "label/__name__/values"))
    assert {name for name in held if name.startswith("ray_nova_")} <= exported_metric_names()
    assert held >= RAY_OWN


def test_stop_frees_its_port_and_start_serves_again(prometheus: Prometheus, stack: Stack) -> None:
    """Another object for the same layout is the same server: found by its pid file."""
    server = Prometheus(stack.layout)
    assert server.running()
    server.stop()
    assert not port_open(server.port)
    server.start()
    assert server.running()
    assert server.ready()  # start() returns once it answers queries, not just listens
