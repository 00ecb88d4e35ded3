"""The embedded Prometheus's place in a layout and the config it writes, without a stack:
its own port below the ephemeral range, its data and config in the state dir, loopback
only, Ray's discovery file of this stack, Nova's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployments.observability import RULES_FILE
from deployments.stack import Layout, Ray, dev_layout, layout_for_tests
from deployments.stack.processes import StackError
from deployments.stack.prometheus import Prometheus


def _other_ports(layout: Layout) -> set[int]:
    ray = layout.ray_ports()
    workers = range(ray.pop("min-worker-port"), ray.pop("max-worker-port") + 1)
    serve_low = int(layout.serve_ingress()["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])
    serve_high = int(layout.serve_ingress()["RAY_SERVE_HAPROXY_METRICS_PORT"]) + 3
    return {
        layout.pg_port,
        layout.redis_port,
        layout.kafka_port,
        layout.ray_port,
        layout.smtp_port,
        layout.http_port,
        layout.dashboard_port,
        layout.grpc_port,
        *ray.values(),
        *workers,
        *range(serve_low, serve_high + 1),
    }


def test_its_port_is_its_own_in_both_stacks_and_below_the_ephemeral_range() -> None:
    dev, test = dev_layout(), layout_for_tests()
    for layout in (dev, test):
        assert layout.prometheus_port < 32768
        assert layout.prometheus_port not in _other_ports(dev) | _other_ports(test)
    assert dev.prometheus_port != test.prometheus_port
    highest = Layout(
        name="x", state_dir=Path("/x"), port_base=30_000, http_port=1, dashboard_port=2, grpc_port=3
    )
    assert highest.prometheus_port < 32768  # NOVA_PORT_BASE's largest value


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(
        name="unit",
        state_dir=tmp_path / "state",
        port_base=23_000,
        http_port=23_800,
        dashboard_port=23_265,
        grpc_port=23_900,
    )


def test_the_config_scrapes_rays_discovery_file_and_itself_and_loads_novas_rules(
    layout: Layout,
) -> None:
    server = Prometheus(layout)
    config = server.config()
    assert config["rule_files"] == [str(RULES_FILE)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (discovery,) = jobs["ray"]["file_sd_configs"]
    assert discovery["files"] == [
        str(Ray(layout).temp_dir / "session_latest" / "prom_metrics_service_discovery.json")
    ]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:23909"]}]


def test_it_listens_on_loopback_and_keeps_its_data_in_the_state_dir(layout: Layout) -> None:
    command = Prometheus(layout).command()
    assert "--web.listen-address=127.0.0.1:23909" in command
    assert f"--storage.tsdb.path={layout.path('prometheus', 'data')}" in command
    assert f"--config.file={layout.path('prometheus', 'prometheus.yml')}" in command
    assert "--storage.tsdb.retention.time=2d" in command
    assert not any(
        flag.startswith(("--web.enable-admin-api", "--web.enable-lifecycle")) for flag in command
    )


def test_prepare_writes_a_private_config_promtool_accepts(layout: Layout) -> None:
    server = Prometheus(layout)
    server.prepare()  # runs `promtool check config`, which also checks the rules
    assert json.loads(server.config_file.read_text()) == server.config()
    assert server.config_file.stat().st_mode & 0o077 == 0
    assert server.data_dir.stat().st_mode & 0o077 == 0


def test_prepare_refuses_a_config_promtool_rejects(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Prometheus(layout)
    monkeypatch.setattr(server, "config", lambda: {"global": {"scrape_interval": "often"}})
    with pytest.raises(StackError, match="promtool check config"):
        server.prepare()


def test_rays_head_points_its_dashboard_at_it_unless_the_operator_named_another(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_PROMETHEUS_HOST", "RAY_GRAFANA_HOST"):
        monkeypatch.delenv(name, raising=False)
    env = Ray(layout).environment()
    assert env["RAY_PROMETHEUS_HOST"] == Prometheus(layout).url == "http://127.0.0.1:23909"
    assert "RAY_GRAFANA_HOST" not in env
    monkeypatch.setenv("RAY_PROMETHEUS_HOST", "http://prometheus.internal:9090")
    monkeypatch.setenv("RAY_GRAFANA_HOST", "http://grafana.internal:3000")
    env = Ray(layout).environment()
    assert env["RAY_PROMETHEUS_HOST"] == "http://prometheus.internal:9090"
    assert env["RAY_GRAFANA_HOST"] == "http://grafana.internal:3000"
