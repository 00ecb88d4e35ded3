"""Who is asking: the client's address, for per-IP rate limits and a session's IP.

A request's address is the one it connects from. Only a proxy the operator named
(`NOVA_TRUSTED_PROXIES`, or `NOVA_TRUST_FORWARDED_FOR` for the proxies on this machine)
may name another, in `X-Forwarded-For`; `Forwarded` and `X-Real-IP` are never read. Each
proxy appends the address it was connected from, so the header is read from the right:
past every trusted proxy, the first address is the client (whatever is left of it, the
client wrote itself).

Serve's HAProxy, in front of the gateway, replaces any `X-Forwarded-For`, `Forwarded`
and `X-Real-IP` a client sends with the address that connected to it, and the HTTP
servers under Serve take a connection's address as it is
(`deployments.serve_patches.harden_serve_ingress`). So on one machine, with no proxy
trusted, every client is known by its own address, HAProxy's view included.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gateway.auth.identity import ClientInfo
from gateway.settings import GatewaySettings, proxy_networks

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# The proxies `NOVA_TRUST_FORWARDED_FOR` trusts: those on this machine.
THIS_MACHINE = "127.0.0.0/8,::1"


@dataclass(frozen=True)
class TrustedProxies:
    """The networks whose connections may name the client."""

    networks: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, entries: str | None) -> TrustedProxies:
        """From a comma-separated list of addresses and networks; raises ValueError."""
        return cls(tuple(ipaddress.ip_network(e, strict=False) for e in proxy_networks(entries)))

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TrustedProxies:
        return _trusted(settings.trusted_proxies, settings.trust_forwarded_for)

    def __contains__(self, address: _Address) -> bool:
        return any(address in network for network in self.networks)


@functools.lru_cache(maxsize=8)
def _trusted(entries: str | None, this_machine: bool) -> TrustedProxies:
    if entries is None and this_machine:
        entries = THIS_MACHINE
    return TrustedProxies.parse(entries)


def _address(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: TrustedProxies
) -> str | None:
    """The client's address: `peer`, unless `peer` is a trusted proxy and `X-Forwarded-For`
    (`forwarded_for`) names one further out. An entry that is not an address ends the
    walk: the last address known stands."""
    if peer is None or not trusted.networks or not forwarded_for:
        return peer
    known = _address(peer)
    if known is None or known not in trusted:
        return peer
    for entry in reversed(forwarded_for.split(",")):
        hop = _address(entry)
        if hop is None:
            break
        known = hop
        if hop not in trusted:
            break
    return str(known)


def client_info(connection: HTTPConnection, settings: GatewaySettings) -> ClientInfo:
    """The client of an HTTP request or a WebSocket."""
    peer = connection.client.host if connection.client else None
    # Several X-Forwarded-For headers are one list, in order.
    forwarded_for = ",".join(connection.headers.getlist("x-forwarded-for")) or None
    ip = client_address(peer, forwarded_for, TrustedProxies.from_settings(settings))
    return ClientInfo(ip=ip, user_agent=connection.headers.get("user-agent"))
