"""A steady mixed load as clients make it: posts, likes, follows and chat messages, each
retried with its idempotency key (or its natural one) until acknowledged.

Every attempt is kept (kind, start, end, ok), so a fault's error window can be read off
afterwards, and every acknowledged write is kept, so the end of the suite can check that
each is present exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.chat import SEND
from tests.support.social import CREATE_POST, FOLLOW, LIKE, Member

# How long one write is retried before the client gives up on it (it is then neither
# acknowledged nor expected; a later check still finds it at most once).
GIVE_UP_S = 120.0
RETRY_PAUSE_S = 0.2
REQUEST_TIMEOUT_S = 10.0
TRACK = "mutation($events: [TrackedEventInput!]!) { trackEvents(events: $events) }"


@dataclass(frozen=True)
class Attempt:
    kind: str
    started: float
    ended: float
    ok: bool
    error: str = ""


@dataclass
class Acknowledged:
    posts: dict[str, str] = field(default_factory=dict)  # text → post id
    post_authors: dict[str, str] = field(default_factory=dict)  # post id → author id
    post_times: dict[str, float] = field(default_factory=dict)  # post id → first attempt
    likes: set[tuple[str, str]] = field(default_factory=set)  # (member id, post id)
    follows: set[tuple[str, str]] = field(default_factory=set)  # (follower, followee)
    follow_times: dict[tuple[str, str], float] = field(default_factory=dict)  # → acknowledged
    messages: dict[str, str] = field(default_factory=dict)  # client message id → message id
    message_rooms: dict[str, str] = field(default_factory=dict)  # client message id → room
    given_up: list[str] = field(default_factory=list)


class MixedLoad:
    """`workers` clients, each doing one write about every `pause_s`, until `stop`."""

    def __init__(
        self,
        http_url: str,
        members: list[Member],
        rooms: dict[str, list[Member]],
        *,
        workers: int = 4,
        pause_s: float = 0.25,
        seed: int = 7,
    ) -> None:
        self.http_url = http_url
        self.members = members
        self.rooms = rooms
        self.workers = workers
        self.pause_s = pause_s
        self.random = random.Random(seed)
        self.attempts: list[Attempt] = []
        self.acknowledged = Acknowledged()
        self.stopped = False
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client = httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S)

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(n)) for n in range(self.workers)]

    async def stop(self) -> None:
        """Stop starting new writes; let the ones in flight finish their retries."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        await self._client.aclose()
        self.stopped = True

    def errors_since(self, since: float) -> list[Attempt]:
        return [a for a in self.attempts if a.started >= since and not a.ok]

    def clean_since(self, since: float, kinds: tuple[str, ...]) -> bool:
        """Every kind has had an attempt started after `since` that succeeded at once, and
        nothing started after it failed."""
        later = [a for a in self.attempts if a.started >= since]
        return all(any(a.ok and a.kind == k for a in later) for k in kinds) and all(
            a.ok for a in later
        )

    async def _worker(self, index: int) -> None:
        member = self.members[index % len(self.members)]
        while not self._stopping.is_set():
            op = self.random.choice(("post", "post", "like", "like", "follow", "message"))
            await getattr(self, f"_{op}")(member)
            await asyncio.sleep(self.pause_s)

    async def _until_acknowledged(
        self, kind: str, member: Member, query: str, variables: dict[str, Any]
    ) -> Any:
        """One write: the same request (same key) until it is acknowledged or given up."""
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            started = time.monotonic()
            data, error = await self._send(member, query, variables)
            self.attempts.append(Attempt(kind, started, time.monotonic(), error == "", error))
            if not error:
                return data
            await asyncio.sleep(RETRY_PAUSE_S)
        self.acknowledged.given_up.append(f"{kind} {variables}")
        return None

    async def _send(self, member: Member, query: str, variables: dict[str, Any]) -> tuple[Any, str]:
        try:
            response = await self._client.post(
                f"{self.http_url}/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {member.token}"},
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:200]
        if response.status_code != 200 or body.get("errors"):
            return None, f"{response.status_code} {body.get('errors')}"[:200]
        return body["data"], ""

    async def _post(self, member: Member) -> None:
        text = f"chaos {uuid.uuid4().hex}"
        variables = {"text": text, "key": uuid.uuid4().hex}
        first_attempt = time.monotonic()
        data = await self._until_acknowledged("post", member, CREATE_POST, variables)
        if data is not None:
            post_id = data["createPost"]["id"]
            self.acknowledged.posts[text] = post_id
            self.acknowledged.post_authors[post_id] = member.id
            self.acknowledged.post_times[post_id] = first_attempt
            await self._until_acknowledged(
                "track",
                member,
                TRACK,
                {"events": [{"kind": "IMPRESSION", "postId": post_id, "position": 0}]},
            )

    async def _like(self, member: Member) -> None:
        if not self.acknowledged.posts:
            return
        post_id = self.random.choice(list(self.acknowledged.posts.values()))
        if await self._until_acknowledged("like", member, LIKE, {"id": post_id}) is not None:
            self.acknowledged.likes.add((member.id, post_id))

    async def _follow(self, member: Member) -> None:
        other = self.random.choice([m for m in self.members if m.id != member.id])
        if await self._until_acknowledged("follow", member, FOLLOW, {"id": other.id}) is not None:
            pair = (member.id, other.id)
            if pair not in self.acknowledged.follows:
                self.acknowledged.follows.add(pair)
                self.acknowledged.follow_times[pair] = time.monotonic()

    async def _message(self, member: Member) -> None:
        rooms = [room for room, people in self.rooms.items() if member in people]
        if not rooms:
            return
        room = self.random.choice(rooms)
        cmid = uuid.uuid4().hex
        variables = {"room": room, "text": f"chaos {cmid}", "cmid": cmid}
        data = await self._until_acknowledged("message", member, SEND, variables)
        if data is not None:
            self.acknowledged.messages[cmid] = data["sendMessage"]["id"]
            self.acknowledged.message_rooms[cmid] = room
