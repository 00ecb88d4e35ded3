"""`nova demo seed`: a synthetic community made through Nova's public GraphQL API, as its
people would make it: accounts, follows, posts with #tags, chat, and visits to the ranked
feed that report impressions, clicks and dwell times and like, comment and share.

The server stamps everything with the current time, so a simulated *day* is a round: the
day's posts, then its chat, then its visits. Every round takes seconds, not a day; the
hidden preference model counts a post's age in rounds (`deployments.demo.preferences`),
and Nova's features see the same order in minutes. Nothing is written behind the API.

Accounts are recognised as the seed's by their email domain (`EMAIL_DOMAIN`); a seed run
again signs the accounts of the plan in with the demo password instead of registering
them, and adds another round of posts and visits.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from deployments.demo.client import Account, Budgets, Client, GraphQLError, SeedError, sign_in
from deployments.demo.operations import (
    CREATE_POST,
    CREATE_ROOM,
    FOLLOW,
    LOGIN,
    REGISTER,
    SEND_MESSAGE,
    UPDATE_PROFILE,
)
from deployments.demo.plan import (
    DemoUser,
    Plan,
    PlannedMessage,
    PlannedPost,
    Room,
    Visit,
    make_plan,
)
from deployments.demo.preferences import World
from deployments.demo.progress import Progress
from deployments.demo.tally import Tally
from deployments.demo.visits import Directory, visit

T = TypeVar("T")

# Every demo account's password, so that a person can sign in as one in the web client and
# a second seed can sign the plan's accounts in again. The accounts hold nothing private.
DEMO_PASSWORD = "nova-demo-password"


@dataclass(frozen=True)
class SeedOptions:
    url: str
    users: int
    days: int
    seed: int
    budgets: Budgets
    concurrency: int = 4
    password: str = DEMO_PASSWORD

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 32:
            raise ValueError(f"concurrency must be 1 to 32 (got {self.concurrency})")


def planned_steps(plan: Plan) -> int:
    """The progress bar's total: one step per account, follow, room, post, message, visit."""
    return sum(
        map(len, (plan.users, plan.follows, plan.rooms, plan.posts, plan.messages, plan.visits))
    )


async def seed(options: SeedOptions, progress: Progress | None = None) -> Tally:
    """Make the community the options name; what was made, as acknowledged."""
    plan = make_plan(options.users, options.days, options.seed)
    progress = progress or Progress(planned_steps(plan))
    client = Client(options.url, options.budgets, concurrency=options.concurrency)
    run = _Run(plan, client, options, progress)
    started = time.monotonic()
    try:
        await run.everything()
    finally:
        await client.close()
        progress.close()
    run.tally.elapsed_s = time.monotonic() - started
    stats = client.stats
    run.tally.requests, run.tally.rate_limited = stats.requests, stats.rate_limited
    run.tally.waited_s = stats.waited_s
    return run.tally


class _Run:
    def __init__(self, plan: Plan, client: Client, options: SeedOptions, progress: Progress):
        self.plan = plan
        self.client = client
        self.options = options
        self.progress = progress
        self.tally = Tally()
        self.world = World(plan)
        self.accounts: list[Account] = []
        self.room_ids: dict[int, str] = {}
        self.names = Directory(user_of={}, post_of={})
        # Keys that make a retried post or message return the original, unique to this run.
        self.run_id = secrets.token_hex(4)

    async def everything(self) -> None:
        self.progress.phase("accounts")
        self.accounts = [Account(user.username, self.options.password) for user in self.plan.users]
        await self.each(self.plan.users, self.join)
        self.progress.phase("follows")
        await self.each(self.plan.follows, self.follow)
        self.progress.phase("chat rooms")
        await self.each(self.plan.rooms, self.open_room)
        for day in range(self.plan.days):
            label = f"day {day + 1}/{self.plan.days}"
            self.progress.phase(f"{label}: posts")
            await self.each(self.plan.posts_on(day), self.post)
            self.progress.phase(f"{label}: chat")
            await self.each(self.plan.messages_on(day), self.message)
            self.progress.phase(f"{label}: visits")
            await self.each(self.plan.visits_on(day), self.visit)
            self.world.end_day()
        self.progress.phase("done")

    async def each(self, items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
        """Run `work` over `items` with as many workers as requests may be in flight."""
        queue = list(items)
        queue.reverse()

        async def worker() -> None:
            while queue:
                await work(queue.pop())
                self.progress.advance()

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.options.concurrency, len(queue))):
                    group.create_task(worker())
        except ExceptionGroup as failed:
            # The first failure says why; the other workers were cancelled because of it.
            raise failed.exceptions[0] from None

    async def join(self, user: DemoUser) -> None:
        account = self.accounts[user.index]
        try:
            data = await self.client.call(
                REGISTER,
                {"input": {"email": user.email, "username": user.username,
                           "password": self.options.password}},
                idempotent=False,
            )  # fmt: skip
            sign_in(account, data["register"])
            self.tally.users_registered += 1
        except GraphQLError as exc:
            if "BAD_USER_INPUT" not in exc.codes:
                raise
            await self.sign_in_again(account, exc)
            self.tally.users_reused += 1
        self.names.user_of[account.user_id] = user.index
        await self.client.call(
            UPDATE_PROFILE, {"input": {"displayName": user.display_name}}, account=account
        )

    async def sign_in_again(self, account: Account, refused: GraphQLError) -> None:
        """A previous seed made this account (or the name is taken): sign in to it."""
        try:
            data = await self.client.call(
                LOGIN, {"input": {"login": account.login, "password": account.password}}
            )
        except GraphQLError as exc:
            raise SeedError(
                f"cannot register {account.login} ({refused}) nor sign in to it with the demo "
                f"password ({exc}): the name is taken by an account a seed did not make"
            ) from exc
        sign_in(account, data["login"])

    async def follow(self, edge: tuple[int, int]) -> None:
        follower, followed = edge
        await self.client.call(
            FOLLOW, {"userId": self.accounts[followed].user_id}, account=self.accounts[follower]
        )
        self.tally.follows += 1

    async def open_room(self, room: Room) -> None:
        data = await self.client.call(
            CREATE_ROOM,
            {"input": {"memberIds": [self.accounts[m].user_id for m in room.members],
                       "name": room.name}},
            account=self.accounts[room.owner],
            idempotent=False,
        )  # fmt: skip
        self.room_ids[room.index] = data["createRoom"]["id"]
        self.tally.rooms += 1

    async def post(self, post: PlannedPost) -> None:
        data = await self.client.call(
            CREATE_POST,
            {"input": {"text": post.text, "idempotencyKey": f"demo-{self.run_id}-{post.index}"}},
            account=self.accounts[post.author],
        )
        self.names.post_of[data["createPost"]["id"]] = post.index
        self.tally.posts += 1

    async def message(self, message: PlannedMessage) -> None:
        await self.client.call(
            SEND_MESSAGE,
            {"input": {"roomId": self.room_ids[message.room], "text": message.text,
                       "clientMessageId": f"demo-{self.run_id}-{message.index}"}},
            account=self.accounts[message.sender],
        )  # fmt: skip
        self.tally.messages += 1

    async def visit(self, plan_visit: Visit) -> None:
        account = self.accounts[plan_visit.viewer]
        await visit(self.client, account, plan_visit, self.world, self.names, self.tally)
