"""Calls to named shard actors: handle lookup, a timeout on every call, and retries while a
shard restarts (only for idempotent methods, which every shard method is)."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import exceptions as ray_errors

from actors.directory import shard_name
from actors.remote import NAMESPACE
from storage.errors import NovaError, Unavailable, classify
from storage.tasks import Backoff

_ACTOR_GONE = (ray_errors.RayActorError, ray_errors.ActorUnavailableError)


class ShardCaller:
    def __init__(
        self, kind: str, shards: int, *, timeout_s: float = 5.0, retry_for_s: float = 20.0
    ) -> None:
        self._kind = kind
        self.shards = shards
        self._timeout_s = timeout_s
        self._retry_for_s = retry_for_s
        self._handles: dict[int, Any] = {}
        self.calls = 0  # tests bound it per request

    async def call(self, index: int, method: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for_s
        backoff = Backoff(base_ms=50, cap_ms=1_000)
        self.calls += 1  # calls asked for, not attempts: a retry is not another call
        while True:
            try:
                handle = self._handle(index)
                return await asyncio.wait_for(
                    getattr(handle, method).remote(*args), self._timeout_s
                )
            except ray_errors.RayTaskError as exc:
                # The shard's own exception, classified by its cause (a Redis outage stays
                # an outage, whatever class Ray raised it as).
                cause = exc.cause
                if isinstance(cause, NovaError):
                    raise cause from None
                raise classify(exc, shard_name(self._kind, index)) from exc
            except TimeoutError:
                raise Unavailable(shard_name(self._kind, index), "timed out") from None
            except (*_ACTOR_GONE, ValueError) as exc:
                # Dead, restarting, or not (yet) registered under its name.
                self._handles.pop(index, None)
                if loop.time() >= deadline:
                    raise Unavailable(shard_name(self._kind, index), str(exc)) from exc
                await backoff.sleep()
            except ray_errors.RayError as exc:
                # An exception that could not be unpickled, a lost worker or object.
                raise classify(exc, shard_name(self._kind, index)) from exc

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(shard_name(self._kind, index), namespace=NAMESPACE)
            self._handles[index] = handle
        return handle
