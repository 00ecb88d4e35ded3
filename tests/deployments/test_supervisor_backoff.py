"""The supervisor's rules, on pid files and a clock it is given: what counts as a crash,
when it restarts, and how it backs off from a server that will not start."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from deployments.stack.layout import layout_for_tests
from deployments.stack.processes import StackError
from deployments.stack.supervisor import (
    MAX_RETRY_S,
    SETTLED_S,
    Supervised,
    Supervisor,
    died,
    layout_from_json,
    layout_to_json,
)


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class Server:
    """A pid file and a start that writes a live pid into it, or fails while `broken`."""

    def __init__(self, tmp_path: Path) -> None:
        self.pid_file = tmp_path / "server.pid"
        self.starts = 0
        self.broken = False

    def crash(self) -> None:
        self.pid_file.write_text(f"{_dead_pid()}\n")

    def start(self) -> None:
        self.starts += 1
        if self.broken:
            raise StackError("server: address in use")
        self.pid_file.write_text(f"{os.getpid()}\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _supervisor(server: Server, clock: Clock) -> Supervisor:
    return Supervisor([Supervised("redis", server.pid_file, server.start)], clock=clock)


def test_a_pid_file_naming_a_dead_process_is_a_crash(server: Server) -> None:
    assert not died(server.pid_file)  # no pid file: stopped on purpose
    server.start()
    assert not died(server.pid_file)
    server.crash()
    assert died(server.pid_file)


def test_a_crash_is_restarted_on_the_second_look_not_the_first(
    server: Server, clock: Clock
) -> None:
    supervisor = _supervisor(server, clock)
    server.crash()
    supervisor.tick()
    assert server.starts == 0
    clock.now += 0.5
    supervisor.tick()
    assert server.starts == 1
    report = supervisor.report()["parts"]["redis"]
    assert report["state"] == "running"
    assert report["restarts"] == 1


def test_a_stopped_server_is_left_alone(server: Server, clock: Clock) -> None:
    supervisor = _supervisor(server, clock)
    for _ in range(10):
        supervisor.tick()
        clock.now += 0.5
    assert server.starts == 0


def test_a_server_that_will_not_start_is_retried_with_growing_waits(
    server: Server, clock: Clock
) -> None:
    supervisor = _supervisor(server, clock)
    server.broken = True
    server.crash()
    tried_at = []
    for _ in range(int(200 / 0.5)):
        before = server.starts
        supervisor.tick()
        if server.starts > before:
            tried_at.append(clock.now)
        clock.now += 0.5
    waits = [b - a for a, b in itertools.pairwise(tried_at)]
    assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(waits) == MAX_RETRY_S
    report = supervisor.report()["parts"]["redis"]
    assert report["state"] == "failing"
    assert report["last_error"] == "server: address in use"
    assert report["restarts"] == 0

    server.broken = False
    clock.now += MAX_RETRY_S
    supervisor.tick()
    assert supervisor.report()["parts"]["redis"]["state"] == "running"


def test_the_backoff_starts_over_once_a_server_has_stayed_up(server: Server, clock: Clock) -> None:
    supervisor = _supervisor(server, clock)
    server.broken = True
    server.crash()
    for _ in range(20):
        supervisor.tick()
        clock.now += 0.5
    server.broken = False
    clock.now += MAX_RETRY_S
    supervisor.tick()
    assert supervisor.watches["redis"].failures > 0
    clock.now += SETTLED_S
    supervisor.tick()
    assert supervisor.watches["redis"].failures == 0


def test_the_layout_travels_to_the_supervisor_process_unchanged() -> None:
    layout = layout_for_tests()
    assert layout_from_json(layout_to_json(layout)) == layout
