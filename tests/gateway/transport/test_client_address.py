"""A client's address is the one it connects from: headers a client sends cannot name
another, through Serve's HAProxy or around it; only configured proxies may name it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployments.settings import Settings
from deployments.stack import Stack
from gateway.transport.client_address import TrustedProxies, client_address
from tests.support.graphql import LOGIN, post, register

SESSIONS = "query { sessions(first: 50) { edges { node { ip } } } }"
LOOPBACK = "127.0.0.1"
# Each header a client (or a proxy) may use to name an address, with the address it names.
SPOOFS = [
    ({"x-forwarded-for": "6.6.6.6"}, "6.6.6.6"),
    ({"x-forwarded-for": "6.6.6.5, 127.0.0.1"}, "6.6.6.5"),
    ({"forwarded": "for=6.6.6.7;proto=http"}, "6.6.6.7"),
    ({"x-real-ip": "6.6.6.8"}, "6.6.6.8"),
]


# -- the rule ------------------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    nobody = TrustedProxies.parse(None)
    assert client_address(LOOPBACK, "6.6.6.6", nobody) == LOOPBACK
    assert client_address("10.1.2.3", "6.6.6.6", nobody) == "10.1.2.3"


def test_a_trusted_proxy_names_the_first_untrusted_address_from_the_right() -> None:
    trusted = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1")
    assert client_address("10.0.0.2", "6.6.6.6", trusted) == "6.6.6.6"
    # The client wrote the leftmost entry itself; the proxies appended the rest.
    assert client_address("10.0.0.2", "1.1.1.1, 6.6.6.6, 10.0.0.9", trusted) == "6.6.6.6"
    assert client_address("10.0.0.2", "10.0.0.7", trusted) == "10.0.0.7"
    assert client_address("10.0.0.2", None, trusted) == "10.0.0.2"
    # A peer outside the list names nothing, whatever it sends.
    assert client_address("192.168.1.1", "6.6.6.6", trusted) == "192.168.1.1"


def test_an_entry_that_is_no_address_ends_the_walk_at_the_last_known_one() -> None:
    trusted = TrustedProxies.parse("10.0.0.0/8")
    assert client_address("10.0.0.2", "<script>, 10.0.0.3", trusted) == "10.0.0.3"
    assert client_address("10.0.0.2", "not-an-ip", trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", "[::1]:80", trusted) == "10.0.0.2"


def test_trust_forwarded_for_trusts_this_machine_only() -> None:
    legacy = TrustedProxies.from_settings(Settings(trust_forwarded_for=True))
    assert client_address(LOOPBACK, "6.6.6.6", legacy) == "6.6.6.6"
    assert client_address("::1", "6.6.6.6", legacy) == "6.6.6.6"
    assert client_address("10.0.0.2", "6.6.6.6", legacy) == "10.0.0.2"
    default = TrustedProxies.from_settings(Settings())
    assert client_address(LOOPBACK, "6.6.6.6", default) == LOOPBACK


def test_a_malformed_trusted_proxy_is_refused_when_settings_are_built() -> None:
    with pytest.raises(ValueError, match="NOVA_TRUSTED_PROXIES"):
        Settings.from_env({"NOVA_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})
    settings = Settings.from_env({"NOVA_TRUSTED_PROXIES": "10.0.0.0/8,::1"})
    assert settings.trusted_proxies == "10.0.0.0/8,::1"


# -- on the test stack ---------------------------------------------------------------------


async def _session_ips(http_url: str, address: str, headers: dict[str, str]) -> set[str]:
    """Register, sign in at `address` sending `headers`; the IPs of the account's sessions."""
    account = await register(http_url)
    credentials = {"input": {"login": account.username, "password": account.password}}
    login = await post(address, LOGIN, credentials, headers=headers)
    token = login.ok()["login"]["accessToken"]
    sessions = (await post(http_url, SESSIONS, token=token)).ok()["sessions"]["edges"]
    assert len(sessions) == 2, sessions  # the registration's and the login's
    return {edge["node"]["ip"] for edge in sessions}


@pytest.mark.stack
@pytest.mark.parametrize(("headers", "spoofed"), SPOOFS)
async def test_a_client_cannot_name_its_address_through_the_proxy(
    http_url: str, redis: Any, headers: dict[str, str], spoofed: str
) -> None:
    ips = await _session_ips(http_url, http_url, headers)
    assert ips == {LOOPBACK}, f"the session was recorded at {ips}, not {LOOPBACK}"
    # Nor does it get rate-limit buckets of its own.
    assert await redis.keys(f"nova:rl:*:{spoofed}") == []


def _gateway_servers(stack: Stack) -> list[str]:
    """The addresses HAProxy sends the gateway's requests to: each replica's own HTTP
    server and Serve's backup proxy, from the config Serve wrote."""
    configs = sorted(Path(stack.layout.path("haproxy")).rglob("haproxy.cfg"))
    assert configs, "Serve wrote no HAProxy config"
    servers: list[str] = []
    backend = None
    for line in configs[-1].read_text().splitlines():
        if match := re.match(r"^(backend|frontend|listen) (\S+)", line):
            backend = match.group(2)
        elif backend == "http-nova" and (server := re.match(r"^\s+server \S+ (\S+)", line)):
            servers.append(server.group(1))
    assert servers, "no gateway server in the HAProxy config"
    return servers


@pytest.mark.stack
async def test_a_client_going_around_the_proxy_cannot_name_its_address(
    http_url: str, stack: Stack, redis: Any
) -> None:
    spoofed = f"6.6.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    for server in _gateway_servers(stack):
        headers = {"x-forwarded-for": spoofed, "forwarded": f"for={spoofed}"}
        ips = await _session_ips(http_url, f"http://{server}", headers)
        assert ips == {LOOPBACK}, f"{server} recorded the session at {ips}"
    assert await redis.keys(f"nova:rl:*:{spoofed}") == []
