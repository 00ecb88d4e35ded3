"""`nova status` and `nova top`: the report's sections on the running test stack (run as
the real command, with the test stack selected by `NOVA_STATE_DIR` and `NOVA_PORT_BASE`),
and the tables, folding and rates as pure functions."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from deployments.cli import build_parser
from deployments.cli.status import ask_status, consumer_groups, serve_summary, watch
from deployments.cli.status_view import render_text
from deployments.cli.top import RateWindow, gateway_totals, report_totals
from deployments.settings import Settings
from deployments.stack import Stack
from deployments.stack.embedded import URL_VARIABLES

# -- on the test stack ---------------------------------------------------------------------


def _nova(stack: Stack, *args: str, timeout_s: float = 120) -> str:
    """The real `nova` command, pointed at the test stack the way an operator points it at
    a stack: by its state dir and ports, with no URL set (they come from its nova.env)."""
    layout = stack.layout
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    env.update(
        NOVA_STATE_DIR=str(layout.state_dir),
        NOVA_PORT_BASE=str(layout.port_base),
        NOVA_HTTP_PORT=str(layout.http_port),
        NOVA_DASHBOARD_PORT=str(layout.dashboard_port),
        NOVA_GRPC_PORT=str(layout.grpc_port),
        COLUMNS="160",
    )
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"nova {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def _status_with_lag(stack: Stack, *, timeout_s: float = 60) -> dict[str, Any]:
    """`nova status --json` once every consumer group has measured its lag (members
    measure it every 5 s, so a freshly deployed member has none yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report: dict[str, Any] = json.loads(_nova(stack, "status", "--json"))
        groups = report["consumers"]
        if groups and all(g["records_behind"] is not None for g in groups):
            return report
        assert time.monotonic() < deadline, f"consumers without lag: {groups}"
        time.sleep(2)


@pytest.mark.stack
def test_status_json_reports_serve_shards_and_consumer_lag(
    stack: Stack, deployed: Settings
) -> None:
    report = _status_with_lag(stack)

    assert {"state_dir", "parts", "outbox", "workers", "serve", "shards", "consumers"} <= set(
        report
    )
    assert report["supervisor"]["running"] is True
    assert set(report["supervisor"]["parts"]) == {
        "postgresql",
        "redis",
        "kafka",
        "smtp",
        "prometheus",
    }
    assert report["state_dir"] == str(stack.layout.state_dir)
    assert report["parts"]["postgresql"] == "running"
    assert report["outbox"]["pending"] >= 0

    deployments = {
        name: dep
        for app in report["serve"]["applications"].values()
        for name, dep in app["deployments"].items()
    }
    gateway = deployments["Gateway"]
    assert gateway["status"] == "HEALTHY"
    assert gateway["healthy"] is True
    assert gateway["running"] == gateway["target"] == deployed.gateway_replicas
    assert [r["state"] for r in gateway["replicas"]] == ["RUNNING"] * deployed.gateway_replicas

    counts = {"counter": deployed.counter_shards, "timeline": deployed.timeline_shards}
    counts["chat"] = deployed.chat_shards
    shards = report["shards"]
    assert sorted(s["name"] for s in shards) == sorted(
        f"{kind}-shard-{i}" for kind, n in counts.items() for i in range(n)
    )
    for shard in shards:
        assert shard["answered"] is True, shard
        assert isinstance(shard["keys"], int), shard
        assert isinstance(shard["queue_depth"], int), shard
        assert min(shard["keys"], shard["queue_depth"]) >= 0, shard

    groups = {g["consumer"]: g for g in report["consumers"]}
    assert "timeline-fanout" in groups
    for group in groups.values():
        assert group["answered"] == group["members"] >= 1, group
        assert group["records_behind"] >= 0, group


@pytest.mark.stack
def test_status_shows_a_shard_that_does_not_answer(stack: Stack, deployed: Settings) -> None:
    import ray

    class Stuck:
        async def status(self) -> dict[str, Any]:
            await asyncio.sleep(3_600)
            return {}

    # A real actor under a shard's name that nothing routes to (no stack has 100 shards).
    actor: Any = ray.remote(num_cpus=0)(Stuck)
    stuck = actor.options(name="chat-shard-99", namespace="nova").remote()
    try:
        ray.get(stuck.__ray_ready__.remote(), timeout=60)
        started = time.monotonic()
        report = json.loads(_nova(stack, "status", "--json"))
        took_s = time.monotonic() - started
    finally:
        ray.kill(stuck)

    shards = {s["name"]: s for s in report["shards"]}
    assert shards["chat-shard-99"]["answered"] is False
    assert "no answer within" in shards["chat-shard-99"]["error"]
    assert all(s["answered"] for name, s in shards.items() if name != "chat-shard-99")
    assert took_s < 60


@pytest.mark.stack
def test_status_prints_tables_and_top_renders_every_section(
    stack: Stack, deployed: Settings
) -> None:
    text = _nova(stack, "status")
    gateway = next(line for line in text.splitlines() if line.strip().startswith("Gateway"))
    replicas = deployed.gateway_replicas
    assert "HEALTHY" in gateway
    assert f"{replicas}/{replicas}" in gateway
    for title in ("Parts", "Serve", "Shards", "Consumers", "Outbox", "Workers"):
        assert f"\n{title}\n" in f"\n{text}", title
    assert "timeline-shard-0" in text
    assert "timeline-fanout" in text

    frame = _nova(stack, "top", "--once", "--interval", "1")
    for title in ("nova top", "Now", "requests/s", "Serve", "Shards", "Consumers", "Outbox"):
        assert title in frame, title
    assert "Gateway" in frame
    assert "counter-shard-0" in frame


def test_status_says_ray_is_unreachable_at_once_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    state_dir = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    env.update(NOVA_STATE_DIR=str(state_dir), NOVA_PORT_BASE="29000", RAY_ADDRESS=address)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took_s = time.monotonic() - started

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["parts"]["ray"] == "external"
    for section in ("workers", "serve", "shards", "consumers"):
        assert report[section].startswith(f"unreachable: no Ray at {address}"), report
    assert took_s < 60  # ray.init alone would retry such an address for minutes
    assert not state_dir.exists()  # no secrets made for a stack that is not there


# -- pure ----------------------------------------------------------------------------------


# Serve's statuses are `(str, Enum)`, whose str() is "_State.RUNNING": not StrEnum.
class _State(str, Enum):  # noqa: UP042
    RUNNING = "RUNNING"
    STARTING = "STARTING"
    HEALTHY = "HEALTHY"
    UPDATING = "UPDATING"


SERVE_DETAILS: dict[str, Any] = {
    "applications": {
        "nova": {
            "status": _State.RUNNING,
            "message": "",
            "route_prefix": "/",
            "deployments": {
                "Gateway": {
                    "status": _State.HEALTHY,
                    "target_num_replicas": 2,
                    "message": "",
                    "replicas": [
                        {"replica_id": "a", "state": _State.RUNNING, "pid": 1},
                        {"replica_id": "b", "state": _State.RUNNING, "pid": 2},
                    ],
                },
                "Ranker": {
                    "status": _State.UPDATING,
                    "target_num_replicas": 2,
                    "message": "scaling up",
                    "replicas": [{"replica_id": "c", "state": _State.STARTING}],
                },
            },
        }
    },
    "proxies": {"node": {"status": _State.HEALTHY, "node_ip": "127.0.0.1"}},
}


def test_serve_summary_counts_running_replicas_against_the_target() -> None:
    serve = serve_summary(SERVE_DETAILS)
    app = serve["applications"]["nova"]
    assert app["status"] == "RUNNING"
    gateway, ranker = app["deployments"]["Gateway"], app["deployments"]["Ranker"]
    assert (gateway["status"], gateway["healthy"]) == ("HEALTHY", True)
    assert (gateway["running"], gateway["target"]) == (2, 2)
    assert (ranker["status"], ranker["healthy"], ranker["running"]) == ("UPDATING", False, 0)
    assert ranker["replicas"][0]["state"] == "STARTING"
    assert json.loads(json.dumps(serve)) == serve  # plain JSON, no enums


WORKERS: list[dict[str, Any]] = [
    {"name": "nova-relay-0", "answered": True, "published": 40, "errors": 1, "crashes": 0}
    | {"last_error": "KafkaConnectionError: broker down"},
    {
        "name": "nova-consumer-fanoutconsumer-0",
        "answered": True,
        "consumer": "timeline-fanout",
        "member": "nova-consumer-fanoutconsumer-0",
        "assignment": ["content.post.created[0]", "content.post.created[1]"],
        "records_behind": 7,
        "applied": 10,
        "dead_lettered": 1,
        "crashes": 0,
    },
    {
        "name": "nova-consumer-fanoutconsumer-1",
        "answered": False,
        "error": "no answer within 5 s",
    },
    {
        "name": "nova-consumer-mailconsumer-0",
        "answered": True,
        "consumer": "mail",
        "member": "nova-consumer-mailconsumer-0",
        "records_behind": None,
        "applied": 3,
        "crashes": 2,
    },
]


def test_no_actors_to_ask_is_an_empty_section_not_an_error() -> None:
    assert ask_status([], "nova", 1.0) == []  # a stack started with `nova up --no-deploy`


def test_consumer_groups_sum_members_and_keep_an_unanswered_member_in_its_group() -> None:
    groups = {g["consumer"]: g for g in consumer_groups(WORKERS)}
    assert set(groups) == {"timeline-fanout", "mail"}
    fanout = groups["timeline-fanout"]
    assert (fanout["members"], fanout["answered"], fanout["partitions"]) == (2, 1, 2)
    assert (fanout["records_behind"], fanout["applied"], fanout["dead_lettered"]) == (7, 10, 1)
    assert groups["mail"]["records_behind"] is None  # not measured yet: not 0
    assert groups["mail"]["crashes"] == 2


def _report() -> dict[str, Any]:
    return {
        "state_dir": "/var/lib/nova",
        "parts": {
            "postgresql": "running",
            "redis": "running",
            "kafka": "stopped",
            "ray": "running",
        },
        "supervisor": {
            "running": True,
            "parts": {
                "postgresql": {"state": "running", "restarts": 0},
                "redis": {"state": "running", "restarts": 2, "last_restart_at": None},
                "kafka": {"state": "failing", "restarts": 0, "last_error": "port 20092 is taken"},
            },
        },
        "outbox": {"pending": 3, "oldest_s": 1.5, "broker_epoch": 1, "pending_dead_letters": 0},
        "workers": WORKERS,
        "serve": serve_summary(SERVE_DETAILS),
        "shards": [
            {"name": "timeline-shard-0", "kind": "timeline", "index": 0, "answered": True}
            | {"keys": 1234, "queue_depth": 5},
            {"name": "chat-shard-0", "kind": "chat", "index": 0, "answered": False}
            | {"error": "no answer within 5 s"},
            {"name": "counter-shard-0", "kind": "counter", "index": 0, "answered": True}
            | {"state": "starting"},
        ],
        "consumers": consumer_groups(WORKERS),
    }


def _row(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.split()[:1] == [first])
    return line.split()


def test_tables_show_each_section_row_by_row() -> None:
    text = render_text(_report(), width=140)
    assert _row(text, "postgresql")[1:] == ["running"]
    assert _row(text, "redis")[1:] == ["running", "restarted", "2", "times"]
    assert " ".join(_row(text, "kafka")) == "kafka stopped supervisor: failing, port 20092 is taken"
    assert "supervisor: not running" not in text
    assert _row(text, "Gateway")[1:3] == ["HEALTHY", "2/2"]
    assert _row(text, "Ranker")[1:3] == ["UPDATING", "0/2"]
    assert _row(text, "timeline-shard-0")[1:5] == ["ok", "1,234", "timelines", "5"]
    assert _row(text, "chat-shard-0")[1:3] == ["no", "answer"]
    assert "no answer within 5 s" in text
    assert _row(text, "counter-shard-0")[1] == "starting"
    # group, members answered/all, partitions, lag, applied, dead-lettered, retries, crashes
    assert _row(text, "timeline-fanout")[1:] == ["1/2", "2", "7", "10", "1", "0", "0"]
    assert _row(text, "mail")[1:5] == ["1/1", "0", "—", "3"]
    relay = " ".join(_row(text, "nova-relay-0"))
    assert relay.startswith("nova-relay-0 ok 0 published 40, errors 1; last error: Kafka")
    assert "nova-consumer-fanoutconsumer-0" not in text  # consumers have their own table
    assert "proxies: 1 HEALTHY" in text


def test_a_section_that_could_not_be_gathered_is_one_line() -> None:
    report = _report()
    report["serve"] = report["shards"] = "unreachable: GetTimeoutError: timed out"
    text = render_text(report, width=120)
    assert "Serve: unreachable: GetTimeoutError: timed out" in text
    assert "Shards: unreachable: GetTimeoutError: timed out" in text
    assert "Consumers" in text
    assert "timeline-fanout" in text


def test_watch_clears_the_screen_before_each_frame_and_stops_on_ctrl_c() -> None:
    frames: list[str] = []
    pauses: list[float] = []
    counter = iter(range(10))
    watch(lambda: f"frame {next(counter)}", 3.0, rounds=2, write=frames.append, sleep=pauses.append)
    assert frames == ["\x1b[H\x1b[2Jframe 0", "\x1b[H\x1b[2Jframe 1"]
    assert pauses == [3.0]

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    assert watch(lambda: "x", 1.0, write=frames.append, sleep=interrupted) == 0


def test_status_and_top_arguments() -> None:
    parser = build_parser()
    assert parser.parse_args(["status"]).watch is None
    assert parser.parse_args(["status", "--watch"]).watch == 2.0
    assert parser.parse_args(["status", "--json", "--watch", "5"]).watch == 5.0
    top = parser.parse_args(["top", "--once"])
    assert (top.once, top.interval) == (True, 2.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "--watch", "0"])


METRICS = """\
# HELP ray_nova_gateway_requests_total GraphQL HTTP requests answered
# TYPE ray_nova_gateway_requests_total counter
ray_nova_gateway_requests_total{Component="core_worker",operation="query",status="200"} 90.0
ray_nova_gateway_requests_total{Component="core_worker",operation="mutation",status="503"} 4.0
ray_nova_gateway_requests_total{operation="refused",status="400"} 6.0
ray_nova_gateway_open{kind="websockets",WorkerId="a"} 3.0
ray_nova_gateway_open{kind="websockets",WorkerId="b"} 2.0
ray_nova_gateway_open{kind="http_requests",WorkerId="a"} 9.0
ray_nova_gateway_request_ms_bucket{le="5.0",operation="query"} 80.0
"""


def test_gateway_totals_sum_requests_5xx_and_websockets_over_replicas() -> None:
    totals = gateway_totals([METRICS, METRICS])
    assert totals == {"requests": 200.0, "errors": 8.0, "websockets": 10.0}


def test_rates_are_differences_over_the_window() -> None:
    window = RateWindow(span_s=30)
    window.add(0.0, {"published": 0, "pending": 5})
    assert window.rate("published") is None  # one sample
    window.add(10.0, {"published": 50, "pending": 7})
    assert window.rate("published") == 5.0
    window.add(40.0, {"published": 80, "pending": 2})
    assert window.rate("published") == 1.0  # over 10 s → 40 s: the 0 s sample left
    assert window.latest("pending") == 2
    window.add(41.0, {"published": 3})  # a relay restarted: its count began again
    assert window.rate("published") is None


def test_a_total_exported_in_steps_is_measured_between_its_changes() -> None:
    window = RateWindow(span_s=60)
    # Exported every 10 s, sampled every 2 s: 100 requests/s, seen as steps of 1,000.
    for at in range(0, 28, 2):
        window.add(float(at), {"requests": 1_000.0 * ((at + 3) // 10)})
    assert window.rate("requests", steps_s=10) == 100.0  # changes at 8 and 18 s
    assert round(window.rate("requests") or 0) == 77  # 2,000 over 0 → 26 s: off

    quiet = RateWindow(span_s=60)
    for at in range(0, 12, 2):
        quiet.add(float(at), {"requests": 500.0})
    assert quiet.rate("requests", steps_s=10) is None  # no step seen yet
    for at in range(12, 24, 2):
        quiet.add(float(at), {"requests": 500.0})
    assert quiet.rate("requests", steps_s=10) == 0.0  # two steps without a change


def test_report_totals_read_relays_consumers_and_outbox() -> None:
    totals = report_totals(_report())
    assert totals == {"published": 40.0, "applied": 13.0, "lag": 7.0, "pending": 3.0}
