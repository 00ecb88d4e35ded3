"""The dev and test stacks never share a port, and every port is below the ephemeral range."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.settings import StackSettings
from deployments.stack import Layout, Stack, dev_layout, layout_for_tests


def _serve_ports(layout: Layout) -> list[int]:
    """HAProxy's frontends, Serve's backup proxy and the replicas' direct-ingress ranges."""
    env = {name: value for name, value in layout.serve_ingress().items() if "PORT" in name}
    ranges: list[int] = []
    for protocol in ("HTTP", "GRPC"):
        low = int(env.pop(f"RAY_SERVE_DIRECT_INGRESS_MIN_{protocol}_PORT"))
        high = int(env.pop(f"RAY_SERVE_DIRECT_INGRESS_MAX_{protocol}_PORT"))
        assert low < high
        ranges += range(low, high + 1)
    return [*ranges, *(int(port) for port in env.values())]


def _port_list(layout: Layout) -> list[int]:
    ray = layout.ray_ports()
    workers = range(ray.pop("min-worker-port"), ray.pop("max-worker-port") + 1)
    return [
        layout.pg_port,
        layout.redis_port,
        layout.kafka_port,
        layout.ray_port,
        layout.http_port,
        layout.dashboard_port,
        layout.grpc_port,
        layout.smtp_port,
        *ray.values(),
        *workers,
        *_serve_ports(layout),
    ]


def _ports(layout: Layout) -> set[int]:
    return set(_port_list(layout))


def test_dev_and_test_stacks_do_not_share_ports_or_state() -> None:
    dev, test = dev_layout(), layout_for_tests()
    assert not _ports(dev) & _ports(test)
    assert dev.state_dir != test.state_dir
    assert max(_ports(dev) | _ports(test)) < 32768


def test_no_two_parts_of_one_stack_share_a_port() -> None:
    for layout in (dev_layout(), layout_for_tests()):
        ports = _port_list(layout)
        assert len(ports) == len(set(ports)), layout.name


def test_serve_ingress_files_live_in_the_stacks_state_dir() -> None:
    dev, test = dev_layout(), layout_for_tests()
    for layout in (dev, test):
        paths = [v for k, v in layout.serve_ingress().items() if "PORT" not in k]
        assert paths
        assert all(Path(v).is_relative_to(layout.state_dir) for v in paths)
    assert (
        dev.serve_ingress()["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]
        != (test.serve_ingress()["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"])
    )


def test_port_base_is_range_checked() -> None:
    with pytest.raises(ValueError, match="NOVA_PORT_BASE"):
        StackSettings.from_env({"NOVA_PORT_BASE": "40000"})


def test_a_set_url_means_that_part_is_not_embedded() -> None:
    stack = Stack(
        dev_layout(),
        environ={"NOVA_REDIS_URL": "redis://127.0.0.1:6390/0", "RAY_ADDRESS": "127.0.0.1:6380"},
    )
    assert stack.embedded() == {
        "postgresql": True,
        "redis": False,
        "kafka": True,
        "ray": False,
        "smtp": True,
        "prometheus": True,
    }
    env = stack.environment()
    assert env["NOVA_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert env["RAY_ADDRESS"] == "127.0.0.1:6380"
    assert "RAY_AUTH_TOKEN_PATH" not in env or env["RAY_AUTH_TOKEN_PATH"] != str(
        stack.ray.token_file
    )


def test_a_prometheus_of_the_operators_own_is_not_embedded() -> None:
    layout = dev_layout()
    own = Stack(layout, environ={"RAY_PROMETHEUS_HOST": "http://127.0.0.1:9090"})
    assert own.embedded()["prometheus"] is False
    ours = Stack(layout, environ={"RAY_PROMETHEUS_HOST": own.prometheus.url})
    assert ours.embedded()["prometheus"] is True
