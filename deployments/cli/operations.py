"""`nova db`, `outbox`, `dlq`, `keys`, `users`, `queries`: operating a running Nova."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from deployments.cli.common import load_settings, with_db


def cmd_db_migrate(_: argparse.Namespace) -> int:
    from storage.kafka.topics import sync_catalogue
    from storage.migrate import migrate

    async def run(db: Any) -> list[str]:
        conn = await db.connect_raw()
        try:
            applied: list[str] = await migrate(conn)
            async with conn.transaction():
                await sync_catalogue(conn, max_partitions=db.settings.kafka_max_partitions)
        finally:
            await conn.close()
        return applied

    applied = with_db(run)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_outbox_replay(args: argparse.Namespace) -> int:
    from storage.outbox.rows import redrive

    async def run(db: Any) -> int:
        async with db.transaction() as conn:
            count: int = await redrive(conn, since=args.since)
        return count

    count = with_db(run)
    print(f"re-driving {count} events committed since {args.since.isoformat()}")
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from storage.kafka.dead_letters import list_dead_letters

    letters = with_db(
        lambda db: list_dead_letters(
            db, consumer=args.consumer, include_replayed=args.all, limit=args.limit
        )
    )
    if args.json:
        print(json.dumps([d.to_dict() for d in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters")
    for d in letters:
        state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M:%S}" if d.replayed_at else "pending"
        print(
            f"#{d.id} {d.failed_at:%Y-%m-%d %H:%M:%S} {d.consumer} {d.topic}[{d.partition}]@"
            f"{d.offset} event={d.event_id} attempts={d.attempts} {state}\n    {d.error}"
        )
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from storage.kafka.dead_letters import replay

    if not args.ids and not args.consumer:
        print("name dead letters: --id N (repeatable) and/or --consumer NAME", file=sys.stderr)
        return 2
    replayed = with_db(lambda db: replay(db, ids=args.ids or None, consumer=args.consumer))
    print(f"replayed: {', '.join(map(str, replayed)) or 'none pending'}")
    return 0


def cmd_keys_rotate(_: argparse.Namespace) -> int:
    from gateway.auth.tokens import rotate_signing_key
    from storage.secrets import Sealer

    settings = load_settings()
    kid = with_db(lambda db: rotate_signing_key(db, Sealer.from_settings(settings)))
    print(f"new signing key {kid}")
    return 0


def cmd_users_grant(args: argparse.Namespace) -> int:
    from gateway.auth.identity import grant_role
    from gateway.services.caches import Invalidations
    from gateway.services.users import UserCache
    from storage.errors import InvalidInput
    from storage.redis_client import make_redis

    settings = load_settings()

    async def run(db: Any) -> Any:
        revoke = getattr(args, "revoke", False)
        user = await grant_role(
            db, args.user, args.role, revoke=revoke, note=getattr(args, "note", None)
        )
        redis = make_redis(settings)
        try:  # every gateway replica drops its cached copy
            cache = UserCache(
                db, redis, Invalidations(redis), max_entries=1, local_ttl_s=1, redis_ttl_s=60
            )
            await cache.changed([user])
        finally:
            await redis.aclose()
        return user

    try:
        user = with_db(run)
    except InvalidInput as exc:
        print(f"nova: {exc}", file=sys.stderr)
        return 2
    print(f"{user.username}: roles {', '.join(user.roles)} (in tokens issued from now on)")
    return 0


def cmd_queries_add(args: argparse.Namespace) -> int:
    """Register documents for persisted-query-only mode; prints each one's hash.

    Registered documents never expire (the APQ TTL is for documents clients send), and
    registering one again is harmless.
    """
    from gateway.transport.apq import PersistedQueryStore, query_hash
    from storage.redis_client import make_redis

    settings = load_settings()

    documents = {path: Path(path).read_text() for path in args.files}

    async def run() -> list[str]:
        redis = make_redis(settings)
        store = PersistedQueryStore(redis, ttl_s=settings.persisted_query_ttl_s)
        try:
            hashes = []
            for path, query in documents.items():
                sha = query_hash(query)
                await store.register(sha, query)
                hashes.append(f"{sha}  {path}")
            return hashes
        finally:
            await redis.aclose()

    for line in asyncio.run(run()):
        print(line)
    return 0
