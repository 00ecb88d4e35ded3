"""PostgreSQL and Redis of an embedded stack with TLS on (`NOVA_TLS`): Nova's own clients
reach them over verified, mutual TLS through the URLs the stack hands out, and nothing
else gets in: not plaintext, not a client without the stack's certificate, not a server
signed by another CA.

A throwaway stack of its own (`tests.support.tls`): only PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from deployments.settings import Settings
from deployments.stack import Stack, dev_layout
from deployments.stack.certs import TlsDir, create
from deployments.stack.processes import pid_alive
from deployments.stack.supervisor import layout_from_json, layout_to_json
from storage.db import Database
from storage.errors import Unavailable
from storage.redis_client import make_redis, ping
from tests.support.tls import UNUSED_KAFKA, UNUSED_SMTP, tls_stack

TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def started() -> Iterator[tuple[Stack, dict[str, str]]]:
    with tls_stack(
        "db", NOVA_KAFKA_BOOTSTRAP=UNUSED_KAFKA, NOVA_SMTP_URL=UNUSED_SMTP, RAY_ADDRESS="auto"
    ) as (stack, env):
        yield stack, env


@pytest.fixture(scope="module")
def settings(started: tuple[Stack, dict[str, str]]) -> Settings:
    return Settings.from_env(started[1])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsDir:
    """A CA that signed nothing of the stack's, with a client certificate of its own."""
    directory = TlsDir(tmp_path_factory.mktemp("other-ca"))
    create(directory, {"local": ("127.0.0.1", "localhost")})
    return directory


def _with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (a None value removes one)."""
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qsl(parts.query) if k not in changes}
    query.update({k: v for k, v in changes.items() if v is not None})
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_the_stack_hands_out_tls_urls(settings: Settings) -> None:
    database = dict(parse_qsl(urlsplit(settings.database_url).query))
    assert database["sslmode"] == "verify-full"
    assert Path(database["sslrootcert"]).name == "ca.crt"
    assert settings.redis_url.startswith("rediss://")
    assert "ssl_ca_certs=" in settings.redis_url


async def test_postgresql_connections_are_tls_with_the_stacks_client_certificate(
    settings: Settings,
) -> None:
    db = await Database.connect(settings, application_name="nova-tls-test")
    try:
        row = await db.fetchrow(
            "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        conn = await db.connect_raw()  # LISTEN and migrations: the direct URL, also TLS
        try:
            direct = await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        finally:
            await conn.close()
    finally:
        await db.close()
    assert row["ssl"] is True, row
    assert row["version"].startswith("TLSv1."), row
    assert row["client_dn"] == "/CN=nova-local", row
    assert direct is True


async def test_postgresql_refuses_plaintext(settings: Settings) -> None:
    plain = _with_query(
        settings.database_url, sslmode="disable", sslrootcert=None, sslcert=None, sslkey=None
    )
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(plain, timeout=TIMEOUT_S)


async def test_postgresql_refuses_a_client_without_a_certificate(settings: Settings) -> None:
    bare = _with_query(settings.database_url, sslcert=None, sslkey=None)
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="certificate"):
        await asyncpg.connect(bare, timeout=TIMEOUT_S)


async def test_a_server_signed_by_another_ca_is_refused_with_the_reason(
    settings: Settings, other_ca: TlsDir
) -> None:
    wrong = _with_query(settings.database_url, sslrootcert=str(other_ca.ca_cert))
    with pytest.raises(Unavailable) as refused:
        await Database.connect(settings.replace(database_url=wrong))
    message = str(refused.value)
    assert "certificate did not verify" in message, message
    assert "sslrootcert" in message, message


async def test_redis_commands_and_pipelines_go_over_mutual_tls(settings: Settings) -> None:
    client = make_redis(settings)
    key = f"tls-test:{uuid.uuid4()}"
    try:
        await ping(client, TIMEOUT_S)
        pipe = client.pipeline(transaction=False)
        pipe.set(key, b"over tls", ex=60)
        pipe.get(key)
        _, value = await pipe.execute()
        port = await client.config_get("tls-port")
        plain_port = await client.config_get("port")
    finally:
        await client.aclose()
    assert value == b"over tls"
    assert port == {"tls-port": str(urlsplit(settings.redis_url).port)}, port
    assert plain_port == {"port": "0"}, plain_port  # no plaintext listener at all


async def test_redis_refuses_plaintext(settings: Settings) -> None:
    plain = settings.redis_url.replace("rediss://", "redis://", 1).split("?")[0]
    client = make_redis(settings.replace(redis_url=plain, redis_timeout_s=2.0))
    try:
        with pytest.raises(Unavailable):
            await ping(client, TIMEOUT_S)
    finally:
        await client.aclose()


async def test_redis_refuses_a_client_without_a_certificate(settings: Settings) -> None:
    bare = _with_query(settings.redis_url, ssl_certfile=None, ssl_keyfile=None)
    client = make_redis(settings.replace(redis_url=bare))
    try:
        with pytest.raises(Unavailable):
            await ping(client, TIMEOUT_S)
    finally:
        await client.aclose()


async def test_a_redis_signed_by_another_ca_is_refused_with_the_reason(
    settings: Settings, other_ca: TlsDir
) -> None:
    wrong = _with_query(settings.redis_url, ssl_ca_certs=str(other_ca.ca_cert))
    client = make_redis(settings.replace(redis_url=wrong))
    try:
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await ping(client, TIMEOUT_S)
    finally:
        await client.aclose()


async def test_a_redis_the_supervisor_restarts_comes_back_with_tls(
    started: tuple[Stack, dict[str, str]], settings: Settings
) -> None:
    """The supervisor rebuilds the stack's layout in its own process: TLS must survive."""
    stack = started[0]
    pid = pid_alive(stack.redis.pid_file)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    client = make_redis(settings)
    try:
        for _ in range(60):  # two looks at 0.5 s, then a start of about 0.5 s
            await asyncio.sleep(0.5)
            restarted = pid_alive(stack.redis.pid_file)
            if restarted not in (None, pid):
                try:
                    await ping(client, TIMEOUT_S)
                    break
                except Unavailable:
                    continue
        else:
            raise AssertionError("Redis did not come back over TLS within 30 s")
        assert await client.config_get("port") == {"port": "0"}
    finally:
        await client.aclose()


@pytest.mark.parametrize("tls", [False, True])
def test_the_supervisor_restarts_servers_with_the_stacks_tls_switch(tls: bool) -> None:
    layout = dataclasses.replace(dev_layout(), tls=tls)
    assert layout_from_json(layout_to_json(layout)).tls is tls
