"""The stack remembers whether its parts were started with TLS, so the commands that
follow `NOVA_TLS=true nova up` need not repeat it, and refuses to join running parts in
the other mode."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.stack import Layout, Stack, dev_layout
from deployments.stack.processes import LOCALHOST, StackError

PORT_BASE = 27_000  # no stack runs here


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NOVA_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("NOVA_PORT_BASE", str(PORT_BASE))
    monkeypatch.delenv("NOVA_TLS", raising=False)
    return tmp_path


def _started(state_dir: Path, *, tls: bool) -> None:
    (state_dir / "embedded.json").write_text(json.dumps({"smtp": True, "tls": tls}))


def test_a_stack_never_started_takes_the_setting(state_dir: Path) -> None:
    assert dev_layout().tls is False


def test_without_nova_tls_the_mode_the_parts_were_started_with_holds(state_dir: Path) -> None:
    _started(state_dir, tls=True)
    assert dev_layout().tls is True


def test_nova_tls_set_wins_over_the_remembered_mode(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _started(state_dir, tls=True)
    monkeypatch.setenv("NOVA_TLS", "false")
    assert dev_layout().tls is False


@pytest.fixture
def running_smtp(state_dir: Path) -> Iterator[Layout]:
    """The layout's SMTP sink as running looks: its pid file naming a live process (this
    one) and its port listening."""
    layout = dev_layout()
    pid_file = layout.path("smtp", "aiosmtpd.pid")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(str(os.getpid()))
    with socket.create_server((LOCALHOST, layout.smtp_port)):
        yield layout


def test_joining_running_parts_in_the_other_mode_is_refused(running_smtp: Layout) -> None:
    _started(running_smtp.state_dir, tls=True)
    stack = Stack(running_smtp, environ={"RAY_ADDRESS": "none"})  # TLS off, asked for
    with pytest.raises(StackError, match=r"\(smtp\) run with TLS on: to turn it off"):
        stack._refuse_another_tls_mode({"smtp": True})


def test_parts_in_the_same_mode_are_joined(running_smtp: Layout) -> None:
    _started(running_smtp.state_dir, tls=False)
    Stack(running_smtp, environ={"RAY_ADDRESS": "none"})._refuse_another_tls_mode({"smtp": True})
