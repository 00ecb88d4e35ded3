"""`nova demo seed`: a synthetic community on a local stack, to try the ranked feed and the
data scientist's loop (train → route → report → rollback) on something.

nova demo seed [--users 60] [--days 3] [--seed 1] [--force] [--url URL] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from deployments.cli.common import load_settings, with_db

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_USERS = 60
DEFAULT_DAYS = 3


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number of at least 1")
    return value


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="a synthetic community to try Nova with")
    commands = demo.add_subparsers(dest="demo_command", required=True)
    p = commands.add_parser(
        "seed",
        help="make users, follows, posts, chat and ranked-feed visits through the API",
        description="Make a synthetic community through Nova's GraphQL API: accounts "
        "(demo_NNNN, email at @demo.nova.example), a heavy-tailed follow graph, posts with "
        "#tags, comments, likes, shares, chat rooms, and simulated visits to the ranked feed "
        "that report impressions, clicks and dwell with trackEvents. A simulated day is one "
        "round of posts, chat and visits (seconds, not a day). Refuses a stack with accounts "
        "a seed did not make unless --force.",
    )
    p.add_argument("--users", type=_positive, default=DEFAULT_USERS, help="people (default 60)")
    p.add_argument(
        "--days", type=_positive, default=DEFAULT_DAYS, help="simulated days (default 3)"
    )
    p.add_argument("--seed", type=int, default=1, help="names the community (default 1)")
    p.add_argument(
        "--force", action="store_true", help="seed a stack that has accounts a seed did not make"
    )
    p.add_argument("--url", default=None, help="the stack's public URL (default NOVA_PUBLIC_URL)")
    p.add_argument(
        "--concurrency", type=_positive, default=4, help="requests in flight (default 4)"
    )
    p.set_defaults(func=seed_command)


def seed_command(args: argparse.Namespace) -> int:
    from deployments.demo import (
        DEMO_PASSWORD,
        USERNAME_PREFIX,
        Budgets,
        SeedError,
        SeedOptions,
        make_plan,
        real_accounts,
        seed,
    )

    settings = load_settings()
    url = (args.url or settings.public_url).rstrip("/")
    if urlsplit(url).hostname not in LOOPBACK:
        return _fail(f"{url} is not on this machine: a demo seed talks to 127.0.0.1 only")
    if (problem := _not_ready(url)) is not None:
        return _fail(problem)
    others: list[str] = with_db(real_accounts)
    if others and not args.force:
        return _fail(
            f"this stack has accounts a demo seed did not make ({', '.join(others)}, ...): "
            "seeding would pour synthetic posts, likes and follows into real people's feeds "
            "and training data. Use a fresh stack, or pass --force to seed it all the same.",
            code=2,
        )
    options = SeedOptions(
        url=url,
        users=args.users,
        days=args.days,
        seed=args.seed,
        budgets=Budgets(
            mutations_per_s=settings.rate_ip_mutations_per_s,
            mutations_burst=settings.rate_ip_mutations_burst,
            queries_per_s=settings.rate_ip_queries_per_s,
            queries_burst=settings.rate_ip_queries_burst,
        ),
        concurrency=args.concurrency,
    )
    plan = make_plan(args.users, args.days, args.seed)
    print(
        f"seeding {url}: {len(plan.users)} people, {len(plan.follows)} follows, "
        f"{len(plan.posts)} posts, {len(plan.visits)} visits over {plan.days} simulated "
        f"days (seed {plan.seed}), under {settings.rate_ip_mutations_per_s:g} mutations/s",
        flush=True,
    )
    started = datetime.now(UTC)
    try:
        tally = asyncio.run(seed(options))
    except SeedError as exc:
        return _fail(str(exc), code=1)
    print("\n".join(tally.lines()))
    print(_training_data(started, tally.impressions))
    if not any(tally.pages_by_version):
        print(
            "warning: no ranked-feed page named a model version, so no impression carries "
            "the features a model is trained on: is a model routed? (nova models list)"
        )
    print(
        f"sign in as {USERNAME_PREFIX}0000 (any {USERNAME_PREFIX}NNNN) with "
        f"password {DEMO_PASSWORD!r}; next: nova models train --since 7d --version v1"
    )
    return 0


def _not_ready(url: str) -> str | None:
    try:
        response = httpx.get(f"{url}/readyz", timeout=5)
    except httpx.HTTPError as exc:
        return f"no Nova answers at {url} ({type(exc).__name__}): start it with `nova up`"
    if response.status_code != 200:
        return f"Nova at {url} is not ready ({response.status_code}: {response.text[:200]})"
    return None


def _training_data(since: datetime, sent: int) -> str:
    """What `nova models train` will find: impressions logged with their features, once
    the analytics sink has written what was sent (a few seconds at most)."""
    from ranking.train import load_dataset

    async def wait(db: Any) -> tuple[int, int]:
        rows, stable = -1, 0
        for _ in range(30):
            data = await load_dataset(db, since)
            stable = stable + 1 if len(data.y) == rows else 0
            rows = len(data.y)
            if rows >= sent or stable >= 3:
                break
            await asyncio.sleep(0.5)
        return rows, int(data.y.sum())

    rows, engaged = with_db(wait)
    return f"  logged    {rows} impressions with features ({engaged} engaged) since {since:%R} UTC"


def _fail(message: str, *, code: int = 1) -> int:
    print(f"nova demo seed: {message}", file=sys.stderr)
    return code
