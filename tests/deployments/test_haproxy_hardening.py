"""Serve's HAProxy as Nova runs it: its admin socket is its owner's alone, and it, not the
client, says where a request came from."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from deployments.serve_patches import harden_serve_ingress
from deployments.settings import Settings
from deployments.stack import Stack


def _patched(monkeypatch: pytest.MonkeyPatch) -> str:
    from ray.serve._private import haproxy, haproxy_templates

    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    monkeypatch.setattr(
        haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    )
    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", haproxy.HAPROXY_CONFIG_TEMPLATE)  # type: ignore[attr-defined]
    harden_serve_ingress()
    patched: str = haproxy.HAPROXY_CONFIG_TEMPLATE  # type: ignore[attr-defined]
    assert patched == haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    return patched


def _section(template: str, name: str) -> str:
    match = re.search(
        rf"^frontend {name}\n(.*?)^(?:frontend|backend|listen) ", template, re.M | re.S
    )
    assert match, f"no frontend {name}"
    return match.group(1)


def test_the_admin_socket_is_for_its_owner_only(monkeypatch: pytest.MonkeyPatch) -> None:
    patched = _patched(monkeypatch)
    sockets = re.findall(r"^\s*stats socket .*$", patched, flags=re.M)
    assert sockets
    for line in sockets:
        assert " mode 600 " in line, line


def test_the_proxy_replaces_what_a_client_says_about_its_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frontend = _section(_patched(monkeypatch), "http_frontend")
    rules = [line.strip() for line in frontend.splitlines() if line.strip().startswith("http-")]
    assert rules[:3] == [
        "http-request del-header forwarded",
        "http-request del-header x-real-ip",
        "http-request set-header x-forwarded-for %[src]",
    ], rules


def test_serve_http_servers_in_this_process_trust_no_forwarding_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uvicorn

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    _patched(monkeypatch)
    config = uvicorn.Config(app=lambda: None)
    assert config.forwarded_allow_ips == ""
    assert "127.0.0.1" not in (config.forwarded_allow_ips or "")


@pytest.mark.stack
def test_the_running_admin_socket_is_mode_0600(stack: Stack, deployed: Settings) -> None:
    sockets = [
        path
        for path in Path(stack.layout.path("haproxy")).rglob("*.sock")
        if stat.S_ISSOCK(os.stat(path).st_mode)
    ]
    assert sockets, "HAProxy has no admin socket"
    for path in sockets:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, f"{path}: {oct(os.stat(path).st_mode)}"
