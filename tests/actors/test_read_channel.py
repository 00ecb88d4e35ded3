"""The direct read channel (`actors.read_channel`) on its own: a server and clients in this
process, over 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from actors.read_channel import ChannelError, ReadClient, ReadServer, RemoteError
from storage.errors import Unavailable


async def handler(payload: bytes) -> bytes:
    """Echoes after waiting as many milliseconds as the payload's first byte says; `!`
    fails as a retriable error, `?` as a bug."""
    if payload == b"!":
        raise Unavailable("redis", "down")
    if payload == b"?":
        raise ValueError("unreadable")
    await asyncio.sleep(payload[0] / 1000)
    return payload[::-1]


@pytest.fixture
async def server() -> AsyncIterator[ReadServer]:
    served = ReadServer(handler)
    await served.start("127.0.0.1")
    yield served
    await served.close()


@pytest.fixture
async def client(server: ReadServer) -> AsyncIterator[ReadClient]:
    assert server.address is not None
    connected = ReadClient(server.address)
    await connected.connect(timeout_s=2)
    yield connected
    await connected.close()


async def test_concurrent_calls_are_answered_out_of_order_each_with_its_own_reply(
    client: ReadClient,
) -> None:
    slow, fast = bytes([50]) + b"slow", bytes([0]) + b"fast"
    done: list[bytes] = []

    async def call(payload: bytes) -> bytes:
        reply = await client.call(payload, timeout_s=2)
        done.append(reply)
        return reply

    replies = await asyncio.gather(call(slow), call(fast))
    assert list(replies) == [slow[::-1], fast[::-1]]
    assert done == [fast[::-1], slow[::-1]]  # the fast one was not held up


async def test_handler_errors_come_back_as_remote_errors_and_the_channel_stays_up(
    client: ReadClient,
) -> None:
    with pytest.raises(RemoteError, match="redis unavailable") as retriable:
        await client.call(b"!", timeout_s=2)
    assert retriable.value.retriable
    with pytest.raises(RemoteError, match="ValueError: unreadable") as failed:
        await client.call(b"?", timeout_s=2)
    assert not failed.value.retriable
    assert await client.call(b"\x00ok", timeout_s=2) == b"ko\x00"


async def test_a_connection_with_the_wrong_secret_is_closed_unanswered(
    server: ReadServer,
) -> None:
    assert server.address is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
    writer.write(b"x" * len(server.address.secret) + struct.pack("<II", 1, 2) + b"\x00a")
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing sent back
    writer.close()


async def test_calls_in_flight_fail_with_channel_error_when_the_server_goes_away(
    server: ReadServer, client: ReadClient
) -> None:
    waiting = asyncio.ensure_future(client.call(bytes([200]), timeout_s=5))
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(ChannelError):
        await waiting
    assert client.broken
    with pytest.raises(ChannelError):
        await client.call(b"\x00", timeout_s=1)


async def test_a_call_past_its_timeout_raises_and_a_late_reply_is_dropped(
    client: ReadClient,
) -> None:
    with pytest.raises(TimeoutError):
        await client.call(bytes([100]), timeout_s=0.02)
    await asyncio.sleep(0.15)  # the late reply arrives and finds no caller
    assert await client.call(b"\x00x", timeout_s=2) == b"x\x00"


async def test_connecting_to_a_closed_port_raises_channel_error(server: ReadServer) -> None:
    assert server.address is not None
    address = server.address
    await server.close()
    await asyncio.sleep(0.05)
    client = ReadClient(address)
    with pytest.raises(ChannelError):
        await client.connect(timeout_s=1)
