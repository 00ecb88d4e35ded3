"""Serve's HAProxy listens on Serve's HTTP host only (127.0.0.1 on one machine)."""

from __future__ import annotations

import re

import pytest

from deployments.serve_patches import harden_serve_ingress


def test_every_haproxy_bind_uses_the_serve_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import haproxy, haproxy_templates

    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.setattr(
        haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    )
    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", haproxy.HAPROXY_CONFIG_TEMPLATE)  # type: ignore[attr-defined]
    harden_serve_ingress()
    patched = haproxy.HAPROXY_CONFIG_TEMPLATE  # type: ignore[attr-defined]
    for template in (patched, haproxy_templates.HAPROXY_CONFIG_TEMPLATE):
        binds = re.findall(r"^\s*bind (.+)$", template, flags=re.MULTILINE)
        assert binds
        for address in binds:
            assert address.startswith(
                ("{{ config.frontend_host }}:", "{{ config.grpc_frontend_host }}:")
            ), address


def test_nothing_is_patched_without_haproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import haproxy_templates

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    before = haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    harden_serve_ingress()
    assert haproxy_templates.HAPROXY_CONFIG_TEMPLATE is before
