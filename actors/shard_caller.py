"""Calls to named shard actors: handle lookup, a timeout on every call, and retries while a
shard restarts or is replaced (only for idempotent methods, which every shard method is: a
call retried after a timeout may run twice)."""

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
        # When each shard first answered through its current handle: a call sent before
        # that may have waited for the shard to start (`_may_answer_later`).
        self._up_since: dict[int, float] = {}
        self.calls = 0  # tests bound it per request

    async def call(self, index: int, method: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for_s
        backoff = Backoff(base_ms=50, cap_ms=1_000)
        self.calls += 1  # calls asked for, not attempts: a retry is not another call
        while True:
            try:
                handle = self._handle(index)
                sent = loop.time()
                answer = await asyncio.wait_for(
                    getattr(handle, method).remote(*args), self._timeout_s
                )
                self._up_since.setdefault(index, loop.time())
                return answer
            except ray_errors.RayTaskError as exc:
                # The shard's own exception, classified by its cause (a Redis outage stays
                # an outage, whatever class Ray raised it as).
                cause = exc.cause
                if isinstance(cause, NovaError):
                    raise cause from None
                raise classify(exc, shard_name(self._kind, index)) from exc
            except TimeoutError:
                if loop.time() >= deadline or not self._may_answer_later(index, handle, sent):
                    raise Unavailable(shard_name(self._kind, index), "timed out") from None
                await backoff.sleep()
            except (*_ACTOR_GONE, ValueError) as exc:
                # Dead, restarting, or not (yet) registered under its name.
                self._handles.pop(index, None)
                self._up_since.pop(index, None)
                if loop.time() >= deadline:
                    raise Unavailable(shard_name(self._kind, index), str(exc)) from exc
                await backoff.sleep()
            except ray_errors.RayError as exc:
                # An exception that could not be unpickled, a lost worker or object.
                raise classify(exc, shard_name(self._kind, index)) from exc

    def _may_answer_later(self, index: int, handle: Any, sent: float) -> bool:
        """Whether a call that timed out is worth sending again: the shard was still
        starting when it was sent, or it has been replaced since (a deploy stops a shard
        and starts its successor under the same name; the caller may learn of the stop
        only later). A shard that was up, and still is, is stuck."""
        if self._up_since.get(index, sent + 1) > sent:
            return True
        try:
            replaced = bool(
                ray.get_actor(shard_name(self._kind, index), namespace=NAMESPACE) != handle
            )
        except ValueError:  # gone, its successor not registered yet
            replaced = True
        if replaced:
            self._handles.pop(index, None)
            self._up_since.pop(index, None)
        return replaced

    def _handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(shard_name(self._kind, index), namespace=NAMESPACE)
            self._handles[index] = handle
        return handle
