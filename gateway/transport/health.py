"""Readiness: PostgreSQL, Redis and Kafka each answer within a timeout, checked concurrently."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
from aiokafka.client import AIOKafkaClient

from gateway.settings import GatewaySettings
from storage.db import Database
from storage.errors import classify
from storage.kafka.clients import security_options
from storage.redis_client import ping as redis_ping


class KafkaProbe:
    """A metadata round trip to the broker; the client is rebuilt after any failure."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._client: AIOKafkaClient | None = None

    async def check(self, timeout_s: float) -> None:
        try:
            if self._client is None:
                self._client = AIOKafkaClient(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    client_id="nova-readiness",
                    request_timeout_ms=int(timeout_s * 1000),
                    **security_options(self._settings),
                )
                await asyncio.wait_for(self._client.bootstrap(), timeout_s)
            await asyncio.wait_for(self._client.fetch_all_metadata(), timeout_s)
        except Exception as exc:
            await self.close()
            raise classify(exc, "kafka") from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a probe being discarded
                await asyncio.wait_for(client.close(), 2)


class Readiness:
    def __init__(self, db: Database, redis: aioredis.Redis, kafka: KafkaProbe, timeout_s: float):
        self._db = db
        self._redis = redis
        self._kafka = kafka
        self._timeout_s = timeout_s

    async def check(self) -> dict[str, str]:
        """`{"postgresql": "ok", "redis": "unavailable: ...", ...}`"""
        names = ("postgresql", "redis", "kafka")
        results = await asyncio.gather(
            self._db.ping(self._timeout_s),
            redis_ping(self._redis, self._timeout_s),
            self._kafka.check(self._timeout_s),
            return_exceptions=True,
        )
        return {
            name: "ok" if result is None else str(result)
            for name, result in zip(names, results, strict=True)
        }
