"""The erasure job: accounts whose deletion grace period has passed are erased, then
scrubbed from every derived store.

Every `NOVA_ERASURE_POLL_S` (run by the `nova-data-export` actor, `deployments.jobs`):

1. **Erase**, one account per transaction (`storage.repositories.erasure`): PostgreSQL
   loses the account and everything that names it, counters are corrected, and the events
   go out through the outbox: `content.post.deleted` per post (timelines), `.deleted` per
   like, comment, share and follow (features, counters' readers), and `account.erased`
   (the account's own timeline and feature keys). After the commit the counter shards get
   the corrected rows and every gateway replica drops its cached copies.
2. **Scrub**, `NOVA_ERASURE_SCRUB_AFTER_S` later, once the consumers have had time to apply
   those events: the chat shards forget the account in the rooms they hold, the media
   store loses its files and export archives, Redis is walked once for any key, member or
   value still naming it (`storage.redis_scrub`), and the retained events that name it are
   deleted from the outbox and the dead letters. Each step can run again harmlessly: a
   scrub that fails is retried later, and the account's `account_erasures` row (the last
   place its id, name and email are kept) is deleted only once all of them succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from actors.chat_client import ChatClient
from actors.counter_client import CounterClient
from actors.media.tasks import StoreSpec
from actors.settings import ActorSettings
from storage.db import Database
from storage.errors import Unavailable, classify
from storage.redis_scrub import Needles, scrub
from storage.repositories.erase_account import Erased
from storage.repositories.erasure import ErasureStore, PendingScrub

log = logging.getLogger(__name__)

# Cache invalidation channels of the gateway replicas (`gateway.services.users`, `.posts`):
# a message is the id whose local copy to drop.
USERS_CHANNEL = "nova:users:changed"
POSTS_CHANNEL = "nova:posts:changed"
BATCH = 20
RETRY_S = 60.0


@dataclass
class ErasureRun:
    erased: int = 0
    scrubbed: int = 0
    failed: int = 0


class ErasureJob:
    def __init__(self, db: Database, redis: aioredis.Redis, settings: ActorSettings) -> None:
        self._store = ErasureStore(db)
        self._redis = redis
        self._settings = settings
        self._counters = CounterClient(settings.counter_shards)
        self._chat = ChatClient(settings.chat_shards, timeout_s=settings.chat_call_timeout_s)
        self._media = StoreSpec(
            settings.media_store, settings.media_s3_access_key, settings.media_s3_secret_key
        ).open()
        self.totals = ErasureRun()

    async def run(self) -> None:
        while True:
            try:
                done = await self.run_once()
                self.totals.erased += done.erased
                self.totals.scrubbed += done.scrubbed
                self.totals.failed += done.failed
            except Unavailable as exc:
                log.warning("erasure postponed: %s", exc)
            except Exception:
                log.exception("erasure round failed; retried at the next")
            await asyncio.sleep(self._settings.erasure_poll_s)

    async def run_once(self) -> ErasureRun:
        done = ErasureRun()
        for _ in range(BATCH):
            erased = await self._store.erase_next(self._settings.erasure_scrub_after_s)
            if erased is None:
                break
            done.erased += 1
            await self._after_erase(erased)
        for pending in await self._store.due_scrubs(BATCH):
            try:
                await self.scrub(pending)
            except Exception as exc:
                error = classify(exc)
                log.warning("scrub of an erased account postponed: %s", error)
                await self._store.scrub_failed(pending.user_id, str(error), RETRY_S)
                done.failed += 1
            else:
                await self._store.scrubbed(pending.user_id)
                done.scrubbed += 1
        return done

    async def _after_erase(self, erased: Erased) -> None:
        """Best effort: a counter shard that misses the rows re-reads them at its next
        refresh, and a replica that misses an invalidation drops its copy at its TTL."""
        try:
            await self._counters.observe(erased.counters)
            for post_id in erased.posts:
                await self._counters.forget_post(post_id)
        except Exception as exc:
            log.warning("counter shards not told of an erasure: %s", classify(exc))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.publish(USERS_CHANNEL, str(erased.user_id))
                for post_id in erased.posts:
                    pipe.publish(POSTS_CHANNEL, str(post_id))
                await pipe.execute()
        except Exception as exc:
            log.warning("replicas not told of an erasure: %s", classify(exc, "redis"))

    async def scrub(self, pending: PendingScrub) -> None:
        if await self._store.events_unpublished(pending.user_id):
            raise Unavailable("outbox relay", "events of the erasure are not published yet")
        if pending.rooms:
            await self._chat.forget_account(pending.rooms, pending.user_id)
        for file_id in pending.files:
            await self._media.delete_media(file_id)
        needles = Needles([pending.user_id], [pending.username, pending.email])
        found = await scrub(self._redis, needles, match="nova:*")
        if found.keys_deleted or found.items_removed:
            log.info(
                "erasure scrub: %d keys and %d members removed from Redis",
                found.keys_deleted,
                found.items_removed,
            )
        await self._store.scrub_rows(pending)

    def status(self) -> dict[str, int]:
        return {
            "erased": self.totals.erased,
            "scrubbed": self.totals.scrubbed,
            "scrub_failures": self.totals.failed,
        }
