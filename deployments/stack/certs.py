"""Certificates for TLS between Nova's parts: one private CA and a certificate per node.

A node's certificate names its addresses (IP and DNS subject alternative names) and
serves both ends of a connection (server and client authentication), because Ray's mutual
TLS uses one certificate per process for both (`RAY_TLS_SERVER_CERT`), and PostgreSQL,
Redis and the gRPC ingress can ask clients for one. Keys are ECDSA P-256 in PKCS#8, which
every part reads (OpenSSL, BoringSSL in gRPC, rustls).

In a directory (`<state dir>/secrets/tls` by default):

    ca.crt            the CA certificate every party trusts
    ca.key            the CA's key, which never leaves the machine that issues
    <node>.crt/.key   a node's certificate and key
    <node>.pem        both in one file, as HAProxy's `crt` takes them

all 0600 in a 0700 directory.

The CA is made once: issuing again signs new node certificates with the same CA, so
nodes already running keep trusting each other. `force` makes a new CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deployments.stack.layout import Layout
from deployments.stack.processes import private_dir

# The embedded stack's one node: everything on loopback.
LOCAL_NODE = "local"
LOCAL_ADDRESSES = ("127.0.0.1", "localhost")
CA_DAYS = 3650
NODE_DAYS = 825  # what browsers and most TLS stacks still accept for a leaf certificate
# Every file, certificates too: the state dir holds only its owner's files (0600), and
# what is copied to a node is the operator's to open up.
PRIVATE = 0o600
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class NodeFiles:
    """A node's certificate and key: what `RAY_TLS_SERVER_CERT` / `_KEY`, PostgreSQL's
    `ssl_cert_file` / `ssl_key_file` or Redis's `tls-cert-file` / `tls-key-file` name."""

    cert: Path
    key: Path
    bundle: Path


@dataclass(frozen=True)
class TlsDir:
    """The files of one certificate directory."""

    path: Path

    @property
    def ca_cert(self) -> Path:
        return self.path / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.path / "ca.key"

    def node(self, name: str = LOCAL_NODE) -> NodeFiles:
        return NodeFiles(
            self.path / f"{name}.crt", self.path / f"{name}.key", self.path / f"{name}.pem"
        )


@dataclass(frozen=True)
class Issued:
    """What `create` wrote: whether the CA is new, and each node's names."""

    ca_created: bool
    nodes: dict[str, tuple[str, ...]]


def stack_tls_dir(layout: Layout) -> TlsDir:
    """Where a stack keeps its certificates (`nova certs create` writes there by default)."""
    return TlsDir(layout.path("secrets", "tls"))


def parse_node(text: str) -> tuple[str, tuple[str, ...]]:
    """`NAME=ADDR[,ADDR...]` (addresses: IPs or DNS names) → (name, addresses)."""
    name, sep, rest = text.partition("=")
    addresses = tuple(part.strip() for part in rest.split(",") if part.strip())
    if not sep or not addresses:
        raise ValueError(f"{text!r}: expected NAME=ADDRESS[,ADDRESS...]")
    if not _NODE_NAME.match(name) or name == "ca":
        raise ValueError(f"{name!r}: a node name is letters, digits, '.', '_' or '-' (not 'ca')")
    return name, addresses


def create(
    directory: TlsDir,
    nodes: Mapping[str, Sequence[str]],
    *,
    force: bool = False,
    node_days: int = NODE_DAYS,
) -> Issued:
    """Make the CA unless it exists (or `force`), then issue each node's certificate."""
    private_dir(directory.path)
    ca_created = force or not (directory.ca_cert.exists() and directory.ca_key.exists())
    if ca_created:
        ca_key, ca_cert = _new_ca()
        _write(directory.ca_key, _key_pem(ca_key), PRIVATE)
        _write(directory.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), PRIVATE)
    else:
        ca_key, ca_cert = _load_ca(directory)
    issued = {}
    for name, addresses in nodes.items():
        key, cert = _new_node(name, addresses, ca_key, ca_cert, days=node_days)
        files = directory.node(name)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        _write(files.key, _key_pem(key), PRIVATE)
        _write(files.cert, cert_pem, PRIVATE)
        _write(files.bundle, cert_pem + _key_pem(key), PRIVATE)
        issued[name] = tuple(addresses)
    return Issued(ca_created, issued)


def ensure_local(directory: TlsDir) -> NodeFiles:
    """The embedded stack's certificates: made on first use, kept afterwards."""
    files = directory.node(LOCAL_NODE)
    wanted = (directory.ca_cert, directory.ca_key, files.cert, files.key, files.bundle)
    if not all(path.exists() for path in wanted):
        create(directory, {LOCAL_NODE: LOCAL_ADDRESSES})
    return files


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Nova internal CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_node(
    name: str,
    addresses: Sequence[str],
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nova-{name}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_names(addresses)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _names(addresses: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _load_ca(directory: TlsDir) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(directory.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory.ca_key}: not an EC key (make a new CA with --force)")
    return key, x509.load_pem_x509_certificate(directory.ca_cert.read_bytes())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` whole (a reader never sees half a key), created with `mode`."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
