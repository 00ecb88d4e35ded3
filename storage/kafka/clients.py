"""Kafka clients configured one way for all of Nova, and topic management.

Every call that waits on the broker is bounded by `kafka_request_timeout_ms`. Every client
reaches the brokers as `security_options` says: plaintext, TLS, or SASL (SCRAM) over TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Mapping
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from storage.errors import classify
from storage.settings import StorageSettings, env_name

log = logging.getLogger(__name__)


def security_options(settings: StorageSettings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin, bare
    client) takes to reach the brokers: the protocol, a TLS context, SASL credentials."""
    protocol = settings.kafka_security_protocol.upper()
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        options["ssl_context"] = kafka_ssl_context(settings)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.upper()
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def kafka_ssl_context(settings: StorageSettings) -> ssl.SSLContext:
    """A client context that checks the broker's certificate and name (against
    `kafka_tls_ca_file`, else the system's CAs) and presents a client certificate if one
    is set. A file that cannot be read is named by its variable."""
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_tls_ca_file,
            certfile=settings.kafka_tls_cert_file,
            keyfile=settings.kafka_tls_key_file,
        )
    except (OSError, ssl.SSLError) as exc:
        names = ", ".join(
            env_name(name)
            for name in ("kafka_tls_ca_file", "kafka_tls_cert_file", "kafka_tls_key_file")
            if getattr(settings, name)
        )
        raise ValueError(f"Kafka's TLS files ({names}) cannot be used: {exc}") from exc
    return context


def make_producer(settings: StorageSettings, *, client_id: str) -> AIOKafkaProducer:
    """acks=all always; idempotence per setting (on for Apache Kafka, off for the embedded
    broker, which lacks InitProducerId v1+). Correctness rests on consumer-side dedup."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=1,
        max_batch_size=1024 * 1024,
        **security_options(settings),
    )


def make_consumer(
    settings: StorageSettings, *, group_id: str | None, client_id: str, topics: tuple[str, ...] = ()
) -> AIOKafkaConsumer:
    """Manual commits, earliest reset (a new group or a lost offset replays, never skips)."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        request_timeout_ms=max(
            settings.kafka_request_timeout_ms, settings.kafka_session_timeout_ms + 1000
        ),
        max_poll_records=settings.consumer_batch_size,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        metadata_max_age_ms=5_000,
        **security_options(settings),
    )


class TopicAdmin:
    """Lists and creates topics; used by the relay and by `nova up`."""

    def __init__(self, settings: StorageSettings, *, client_id: str = "nova-admin") -> None:
        self._settings = settings
        self._client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None

    @property
    def _timeout_s(self) -> float:
        return self._settings.kafka_request_timeout_ms / 1000

    async def _client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._settings.kafka_bootstrap,
                client_id=self._client_id,
                request_timeout_ms=self._settings.kafka_request_timeout_ms,
                **security_options(self._settings),
            )
            try:
                await asyncio.wait_for(admin.start(), self._timeout_s)
            except BaseException as exc:
                await _quietly_close(admin)
                if not isinstance(exc, Exception):
                    raise
                raise classify(exc, "kafka") from exc
            self._admin = admin
        return self._admin

    async def partitions(self) -> dict[str, int]:
        """Existing topics and their partition counts."""
        admin = await self._client()
        try:
            names = await asyncio.wait_for(admin.list_topics(), self._timeout_s)
            if not names:
                return {}
            described = await asyncio.wait_for(admin.describe_topics(list(names)), self._timeout_s)
        except BaseException as exc:
            await self.close()
            if not isinstance(exc, Exception):
                raise
            raise classify(exc, "kafka") from exc
        return {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}

    async def ensure(self, wanted: Mapping[str, int]) -> dict[str, int]:
        """Create missing topics; return the ones whose partition count differs from `wanted`."""
        existing = await self.partitions()
        missing = [
            NewTopic(
                name, num_partitions=n, replication_factor=self._settings.kafka_replication_factor
            )
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            admin = await self._client()
            try:
                await asyncio.wait_for(admin.create_topics(missing), self._timeout_s)
            except TopicAlreadyExistsError:
                pass
            except BaseException as exc:
                await self.close()
                if not isinstance(exc, Exception):
                    raise
                raise classify(exc, "kafka") from exc
            existing = await self.partitions()
        return {
            name: existing.get(name, 0) for name, n in wanted.items() if existing.get(name, 0) != n
        }

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await _quietly_close(admin)


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], timeout_s: float
) -> dict[TopicPartition, int]:
    try:
        result: dict[TopicPartition, int] = await asyncio.wait_for(
            consumer.end_offsets(partitions), timeout_s
        )
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        raise classify(exc, "kafka") from exc
    return result


async def _quietly_close(client: AIOKafkaAdminClient) -> None:
    # Closing a broken client must not mask the error that brought us here.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 5)


KafkaClient: TypeAlias = AIOKafkaProducer | AIOKafkaConsumer


async def start_within(client: KafkaClient, timeout_s: float) -> None:
    """Start a producer or consumer within `timeout_s`; one that does not is stopped, and
    the failure is raised as Nova's error (an outage is `Unavailable`, retriable)."""
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except BaseException as exc:
        await stop_quietly(client)
        if not isinstance(exc, Exception):
            raise
        raise classify(exc, "kafka") from exc


async def stop_quietly(client: KafkaClient, timeout_s: float = 5) -> None:
    """Stop a client that is broken or no longer wanted; a failure to stop is only logged
    (at debug): it must not mask what brought us here."""
    try:
        await asyncio.wait_for(client.stop(), timeout_s)
    except Exception:
        log.debug("stopping a Kafka client failed", exc_info=True)
