"""Kafka clients reach the brokers as the settings say: plaintext, TLS (with a client
certificate), or SCRAM over TLS; settings that would send credentials bare, or ignore them,
are refused. The embedded broker (tansu 0.6) speaks plaintext only, which a TLS client
finds out at once."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from deployments.stack.broker import Broker
from deployments.stack.certs import LOCAL_ADDRESSES, TlsDir, create
from deployments.stack.processes import port_open
from storage.errors import Unavailable
from storage.kafka.clients import (
    TopicAdmin,
    kafka_ssl_context,
    make_consumer,
    make_producer,
    security_options,
    start_within,
)
from storage.settings import StorageSettings


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsDir:
    directory = TlsDir(tmp_path_factory.mktemp("kafka-tls"))
    create(directory, {"local": LOCAL_ADDRESSES})
    return directory


def _sasl_ssl(tls: TlsDir, **more: str) -> StorageSettings:
    return StorageSettings.from_env(
        {
            "NOVA_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "NOVA_KAFKA_SASL_MECHANISM": "scram-sha-256",
            "NOVA_KAFKA_SASL_USERNAME": "nova",
            "NOVA_KAFKA_SASL_PASSWORD": "s3cret",
            "NOVA_KAFKA_TLS_CA_FILE": str(tls.ca_cert),
            **more,
        }
    )


def test_plaintext_by_default() -> None:
    assert security_options(StorageSettings()) == {"security_protocol": "PLAINTEXT"}


def test_scram_over_tls_from_settings(tls: TlsDir) -> None:
    options = security_options(_sasl_ssl(tls))
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "nova",
        "sasl_plain_password": "s3cret",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] == 1  # the CA named, not the system's


async def test_every_client_nova_makes_carries_them(tls: TlsDir) -> None:
    settings = _sasl_ssl(tls)
    producer = make_producer(settings, client_id="tls-test")
    consumer = make_consumer(settings, group_id=None, client_id="tls-test")
    for client in (producer.client, consumer._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert client._sasl_plain_username == "nova"
        assert isinstance(client._ssl_context, ssl.SSLContext)
    admin = TopicAdmin(settings)
    with pytest.raises(Unavailable):  # no broker there; built with the same options
        await admin._client()
    await admin.close()


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"NOVA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs NOVA_KAFKA_SASL_USERNAME"),
        (
            {"NOVA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "NOVA_KAFKA_SASL_USERNAME": "nova"},
            "needs NOVA_KAFKA_SASL_USERNAME and NOVA_KAFKA_SASL_PASSWORD",
        ),
        ({"NOVA_KAFKA_SASL_USERNAME": "nova"}, "used only with"),
        (
            {
                "NOVA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "NOVA_KAFKA_SASL_MECHANISM": "PLAIN",
                "NOVA_KAFKA_SASL_USERNAME": "nova",
                "NOVA_KAFKA_SASL_PASSWORD": "s3cret",
            },
            "PLAIN sends the password",
        ),
        ({"NOVA_KAFKA_TLS_CA_FILE": "/ca.crt"}, "used only with NOVA_KAFKA_SECURITY_PROTOCOL=SSL"),
        (
            {"NOVA_KAFKA_SECURITY_PROTOCOL": "SSL", "NOVA_KAFKA_TLS_CERT_FILE": "/c.crt"},
            "go together",
        ),
        ({"NOVA_KAFKA_SECURITY_PROTOCOL": "TLS"}, "NOVA_KAFKA_SECURITY_PROTOCOL must be"),
        ({"NOVA_KAFKA_SASL_MECHANISM": "GSSAPI"}, "NOVA_KAFKA_SASL_MECHANISM must be"),
    ],
)
def test_unsafe_or_incomplete_security_settings_are_refused(
    env: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        StorageSettings.from_env(env)


def test_an_unreadable_tls_file_is_named(tmp_path: Path) -> None:
    settings = StorageSettings.from_env(
        {
            "NOVA_KAFKA_SECURITY_PROTOCOL": "SSL",
            "NOVA_KAFKA_TLS_CA_FILE": str(tmp_path / "missing.crt"),
        }
    )
    with pytest.raises(ValueError, match="NOVA_KAFKA_TLS_CA_FILE"):
        kafka_ssl_context(settings)


async def test_the_client_certificate_is_presented(tls: TlsDir) -> None:
    """A TLS server that demands a client certificate of the CA accepts Nova's context
    (mutual TLS, as a broker with `ssl.client.auth=required` does)."""
    node = tls.node("local")
    settings = StorageSettings.from_env(
        {
            "NOVA_KAFKA_SECURITY_PROTOCOL": "SSL",
            "NOVA_KAFKA_TLS_CA_FILE": str(tls.ca_cert),
            "NOVA_KAFKA_TLS_CERT_FILE": str(node.cert),
            "NOVA_KAFKA_TLS_KEY_FILE": str(node.key),
        }
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca_cert))
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_cert_chain(node.cert, node.key)
    peers: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peercert"))
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        for context, presented in ((kafka_ssl_context(settings), True), (None, False)):
            if context is None:  # the same CA, no client certificate
                context = ssl.create_default_context(cafile=str(tls.ca_cert))
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=context), 5
                )
                await asyncio.sleep(0.1)
                writer.close()
            except (ssl.SSLError, ConnectionError):
                assert not presented
    finally:
        listener.close()
        await listener.wait_closed()
    assert len(peers) == 1, peers  # only the client with the certificate got in
    assert peers[0], peers


async def test_the_embedded_broker_speaks_plaintext_only(tls: TlsDir) -> None:
    """tansu 0.6 takes `--cert` but its Kafka listener stays plaintext: a TLS client gets no
    handshake (`docs/security.md`). When this fails, the broker learned TLS: document it."""
    port = next(p for p in range(26_092, 26_192) if not port_open(p))
    listener = f"tcp://127.0.0.1:{port}"
    broker = await asyncio.create_subprocess_exec(
        str(Broker.binary()),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        "memory://tansu/",
        "--cert",
        str(tls.node("local").bundle),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            if port_open(port):
                break
            await asyncio.sleep(0.1)
        base = {
            "NOVA_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "NOVA_KAFKA_REQUEST_TIMEOUT_MS": "2000",
            "NOVA_KAFKA_IDEMPOTENCE": "false",  # tansu lacks InitProducerId v1+
        }
        tls_client = StorageSettings.from_env(
            {
                **base,
                "NOVA_KAFKA_SECURITY_PROTOCOL": "SSL",
                "NOVA_KAFKA_TLS_CA_FILE": str(tls.ca_cert),
            }
        )
        producer = make_producer(tls_client, client_id="tls-test")
        with pytest.raises(Unavailable):
            await start_within(producer, 10)
        plain = make_producer(StorageSettings.from_env(base), client_id="tls-test")
        await start_within(plain, 10)  # the same broker, in plaintext
        await plain.stop()
    finally:
        broker.terminate()
        await asyncio.wait_for(broker.wait(), 10)
