"""`nova certs create`: a private CA kept across runs, and node certificates that name
their addresses and complete a mutual TLS handshake with a client of the same CA."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from deployments.cli import build_parser
from deployments.stack.certs import LOCAL_ADDRESSES, TlsDir, create, ensure_local, parse_node


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_command_makes_a_private_ca_and_a_certificate_per_node(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["certs", "create", "--dir", str(tmp_path), "--node", "head=10.0.0.5,head.internal"]
    )
    assert args.func(args) == 0
    tls = TlsDir(tmp_path)
    assert _mode(tmp_path) == 0o700
    files = ("ca.crt", "ca.key", "head.crt", "head.key", "head.pem")
    assert {path.name: _mode(path) for path in tmp_path.iterdir()} == dict.fromkeys(files, 0o600)
    node = tls.node("head")
    cert = _cert(node.cert)
    cert.verify_directly_issued_by(_cert(tls.ca_cert))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert names.get_values_for_type(x509.DNSName) == ["head.internal"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ca = _cert(tls.ca_cert).extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca.ca is True
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The bundle HAProxy reads is the same certificate with its key.
    assert node.bundle.read_bytes() == node.cert.read_bytes() + node.key.read_bytes()


def test_without_nodes_it_issues_the_local_one_for_loopback(tmp_path: Path) -> None:
    args = build_parser().parse_args(["certs", "create", "--dir", str(tmp_path)])
    assert args.func(args) == 0
    cert = _cert(TlsDir(tmp_path).node("local").cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_running_again_keeps_the_ca_unless_forced(tmp_path: Path) -> None:
    tls = TlsDir(tmp_path)
    first = create(tls, {"a": ("10.0.0.1",)})
    ca_key, ca_cert = tls.ca_key.read_bytes(), tls.ca_cert.read_bytes()
    again = create(tls, {"b": ("10.0.0.2",)})
    assert (first.ca_created, again.ca_created) == (True, False)
    assert (tls.ca_key.read_bytes(), tls.ca_cert.read_bytes()) == (ca_key, ca_cert)
    # Nodes issued at different times trust each other: one CA signed both.
    for name in ("a", "b"):
        _cert(tls.node(name).cert).verify_directly_issued_by(_cert(tls.ca_cert))
    forced = create(tls, {"a": ("10.0.0.1",)}, force=True)
    assert forced.ca_created
    assert tls.ca_key.read_bytes() != ca_key


def test_the_embedded_stacks_certificates_are_made_once(tmp_path: Path) -> None:
    tls = TlsDir(tmp_path / "tls")
    node = ensure_local(tls)
    made = node.cert.read_bytes()
    assert ensure_local(tls).cert.read_bytes() == made


@pytest.mark.parametrize("text", ["head", "head=", "=10.0.0.1", "ca=10.0.0.1", "a b=10.0.0.1"])
def test_a_malformed_node_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"NAME=ADDRESS|node name"):
        parse_node(text)


def _contexts(tls: TlsDir, client_ca: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    node = tls.node("local")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_cert))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(node.cert, node.key)
    client = ssl.create_default_context(cafile=str(client_ca))
    client.load_cert_chain(node.cert, node.key)
    return server, client


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """A TLS connection over loopback; the client certificate's CN the server saw."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        seen.extend(value for rdn in peer.get("subject", ()) for key, value in rdn)
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client), 5
        )
        writer.close()
        await asyncio.sleep(0.05)
    finally:
        listener.close()
        await listener.wait_closed()
    return ",".join(seen)


async def test_a_node_certificate_does_mutual_tls_by_address(tmp_path: Path) -> None:
    tls = TlsDir(tmp_path / "ours")
    create(tls, {"local": LOCAL_ADDRESSES})
    assert await _handshake(*_contexts(tls, tls.ca_cert)) == "nova-local"
    other = TlsDir(tmp_path / "other")
    create(other, {"local": LOCAL_ADDRESSES})
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(*_contexts(tls, other.ca_cert))
