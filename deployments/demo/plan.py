"""The plan of a demo community: who joins, who follows whom, what is posted on which
simulated day, the chat rooms, and every visit with the random draws its decisions use.

All of it comes from one numpy `Generator` seeded with `--seed`, drawn in a fixed order,
so a seed names one community. What the server makes of it (ids, times, the order a feed
shows) varies between runs; the plan does not.

The follow graph has a heavy tail: people arrive one by one and follow accounts with a
probability that is the product of (followers so far + 1), an appeal drawn from a Pareto
distribution, and a little shared taste (preferential attachment with fitness); some
follows are returned. A few accounts end up followed by many, most by a handful.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from deployments.demo.texts import (
    ASIDES,
    FIRST_NAMES,
    LAST_INITIALS,
    MESSAGES,
    OPENERS,
    ROOM_NAMES,
    SAYINGS,
    TOPICS,
)

USERNAME_PREFIX = "demo_"
EMAIL_DOMAIN = "demo.nova.example"  # RFC 2606: reserved, never delivered

MEAN_FOLLOWS = 7.0  # median accounts a person follows
FOLLOW_BACK = 0.2  # share of follows returned
APPEAL_SHAPE = 1.3  # Pareto shape of an account's appeal: smaller is a heavier tail
HOMOPHILY = 0.6  # how much shared taste draws a follow
POSTS_PER_DAY = 0.9  # for a person of average activity
EXTRA_VISITS_PER_DAY = 0.6  # beyond the first, for a person of average activity
PAGE_SIZE = 10
SECOND_PAGE = 0.3  # share of visits that scroll to a second page
MESSAGES_PER_ROOM_DAY = 4.0
PEOPLE_PER_ROOM = 15  # one room per this many people, at most MAX_ROOMS
MAX_ROOMS = 4
# Uniform draws per shown post: engaged, click, long dwell, like, comment, share, dwell
# length, short dwell, comment text (`deployments.demo.preferences.decide`).
DRAWS = 9


@dataclass(frozen=True)
class DemoUser:
    index: int
    username: str
    display_name: str
    taste: np.ndarray  # [topics], standard normal: how much they like each topic (hidden)
    activity: float  # mean 1: how often they post and visit
    propensity: float  # how readily they engage with anything (hidden)

    @property
    def email(self) -> str:
        return f"{self.username}@{EMAIL_DOMAIN}"


@dataclass(frozen=True)
class PlannedPost:
    index: int
    day: int
    author: int
    text: str
    tags: tuple[int, ...]  # topic indices, as #tags in the text
    quality: float  # how appealing it is to anyone (hidden)


@dataclass(frozen=True)
class Room:
    index: int
    owner: int
    members: tuple[int, ...]  # besides the owner
    name: str


@dataclass(frozen=True)
class PlannedMessage:
    index: int
    day: int
    room: int
    sender: int
    text: str


@dataclass(frozen=True)
class Visit:
    index: int
    day: int
    viewer: int
    pages: int
    page_size: int
    draws: np.ndarray  # [pages * page_size, DRAWS] uniforms, one row per shown post

    @property
    def slots(self) -> int:
        return self.pages * self.page_size


@dataclass(frozen=True)
class Plan:
    seed: int
    days: int
    users: tuple[DemoUser, ...]
    follows: tuple[tuple[int, int], ...]  # (follower, followed)
    posts: tuple[PlannedPost, ...]  # by day, then in the order they are made
    rooms: tuple[Room, ...]
    messages: tuple[PlannedMessage, ...]
    visits: tuple[Visit, ...]  # by day, then in the order they start

    def posts_on(self, day: int) -> list[PlannedPost]:
        return [p for p in self.posts if p.day == day]

    def messages_on(self, day: int) -> list[PlannedMessage]:
        return [m for m in self.messages if m.day == day]

    def visits_on(self, day: int) -> list[Visit]:
        return [v for v in self.visits if v.day == day]

    def digest(self) -> str:
        """A hash of everything planned: equal for equal seeds and sizes."""
        h = hashlib.sha256(f"{self.seed}|{self.days}".encode())
        for user in self.users:
            h.update(f"{user.username}|{user.display_name}|{user.activity:.12g}".encode())
            h.update(user.taste.tobytes())
        h.update(repr(self.follows).encode())
        for post in self.posts:
            h.update(f"{post.day}|{post.author}|{post.text}|{post.quality:.12g}".encode())
        h.update(repr([(r.owner, r.members, r.name) for r in self.rooms]).encode())
        h.update(repr([(m.day, m.room, m.sender, m.text) for m in self.messages]).encode())
        for visit in self.visits:
            h.update(f"{visit.day}|{visit.viewer}|{visit.pages}".encode())
            h.update(visit.draws.tobytes())
        return h.hexdigest()


def make_plan(users: int, days: int, seed: int) -> Plan:
    """The community `seed` names, at this size. Draw order is part of the contract."""
    if users < 2:
        raise ValueError(f"users must be at least 2 (got {users})")
    if days < 1:
        raise ValueError(f"days must be at least 1 (got {days})")
    rng = np.random.default_rng(seed)
    people = _people(rng, users)
    follows = _follow_graph(rng, people)
    rooms = _rooms(rng, people, follows)
    posts: list[PlannedPost] = []
    messages: list[PlannedMessage] = []
    visits: list[Visit] = []
    for day in range(days):
        posts += _posts(rng, people, day, first=len(posts))
        messages += _messages(rng, rooms, day, first=len(messages))
        visits += _visits(rng, people, day, first=len(visits))
    return Plan(
        seed, days, tuple(people), tuple(follows), tuple(posts), tuple(rooms),
        tuple(messages), tuple(visits),
    )  # fmt: skip


def _people(rng: np.random.Generator, n: int) -> list[DemoUser]:
    tastes = rng.standard_normal((n, len(TOPICS)))
    activity = rng.lognormal(0.0, 0.5, n)
    activity /= activity.mean()
    propensity = rng.normal(0.0, 0.3, n)
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_INITIALS), n)
    return [
        DemoUser(
            index=i,
            username=f"{USERNAME_PREFIX}{i:04d}",
            display_name=f"{FIRST_NAMES[first[i]]} {LAST_INITIALS[last[i]]}.",
            taste=tastes[i],
            activity=float(activity[i]),
            propensity=float(propensity[i]),
        )
        for i in range(n)
    ]


def _follow_graph(rng: np.random.Generator, people: list[DemoUser]) -> list[tuple[int, int]]:
    n = len(people)
    tastes = np.array([p.taste for p in people])
    similarity = tastes @ tastes.T / tastes.shape[1]
    appeal = 1.0 + rng.pareto(APPEAL_SHAPE, n)
    wanted = np.clip(np.round(rng.lognormal(np.log(MEAN_FOLLOWS), 0.6, n)), 1, n - 1)
    followers = np.zeros(n)
    edges: list[tuple[int, int]] = []
    for i in rng.permutation(n):
        weight = (followers + 1.0) * appeal * np.exp(HOMOPHILY * similarity[i])
        weight[i] = 0.0
        targets = rng.choice(n, size=int(wanted[i]), replace=False, p=weight / weight.sum())
        for j in sorted(int(t) for t in targets):
            edges.append((int(i), j))
            followers[j] += 1
    present = set(edges)
    returned = rng.random(len(edges)) < FOLLOW_BACK
    for (i, j), back in zip(list(edges), returned, strict=True):
        if back and (j, i) not in present:
            edges.append((j, i))
            present.add((j, i))
    return edges


def topic_preferences(user: DemoUser) -> np.ndarray:
    """What a person posts about: mostly what they like."""
    weight = np.exp(1.5 * user.taste)
    result: np.ndarray = weight / weight.sum()
    return result


def _posts(
    rng: np.random.Generator, people: list[DemoUser], day: int, *, first: int
) -> list[PlannedPost]:
    counts = np.minimum(rng.poisson(POSTS_PER_DAY * np.array([p.activity for p in people])), 4)
    made: list[tuple[int, tuple[int, ...], str, float]] = []
    for person, count in zip(people, counts, strict=True):
        for _ in range(int(count)):
            size = 2 if rng.random() < 0.35 else 1
            tags = tuple(
                int(t)
                for t in rng.choice(
                    len(TOPICS), size=size, replace=False, p=topic_preferences(person)
                )
            )
            made.append((person.index, tags, _post_text(rng, tags), float(rng.normal())))
    order = rng.permutation(len(made))
    return [
        PlannedPost(first + k, day, made[i][0], made[i][2], made[i][1], made[i][3])
        for k, i in enumerate(order)
    ]


def _post_text(rng: np.random.Generator, tags: tuple[int, ...]) -> str:
    sayings = SAYINGS[TOPICS[tags[0]]]
    parts = [OPENERS[rng.integers(len(OPENERS))], sayings[rng.integers(len(sayings))] + "."]
    for _ in range(int(rng.integers(0, 3))):
        parts.append(ASIDES[rng.integers(len(ASIDES))])
    parts += [f"#{TOPICS[t]}" for t in tags]
    return " ".join(part for part in parts if part)


def _rooms(
    rng: np.random.Generator, people: list[DemoUser], follows: list[tuple[int, int]]
) -> list[Room]:
    n = len(people)
    if n < 3:
        return []
    count = min(MAX_ROOMS, max(1, n // PEOPLE_PER_ROOM))
    neighbours: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in follows:
        neighbours[a].add(b)
        neighbours[b].add(a)
    busiest = np.argsort(-np.array([p.activity for p in people]), kind="stable")
    rooms = []
    for index, owner in enumerate(int(o) for o in busiest[:count]):
        circle = sorted(neighbours[owner]) or [i for i in range(n) if i != owner]
        size = min(len(circle), int(rng.integers(2, 7)))
        members = tuple(sorted(int(m) for m in rng.choice(circle, size=size, replace=False)))
        rooms.append(Room(index, owner, members, ROOM_NAMES[index % len(ROOM_NAMES)]))
    return rooms


def _messages(
    rng: np.random.Generator, rooms: list[Room], day: int, *, first: int
) -> list[PlannedMessage]:
    made: list[PlannedMessage] = []
    for room in rooms:
        speakers = (room.owner, *room.members)
        for _ in range(int(rng.poisson(MESSAGES_PER_ROOM_DAY))):
            sender = speakers[rng.integers(len(speakers))]
            text = MESSAGES[rng.integers(len(MESSAGES))]
            made.append(PlannedMessage(first + len(made), day, room.index, sender, text))
    return made


def _visits(
    rng: np.random.Generator, people: list[DemoUser], day: int, *, first: int
) -> list[Visit]:
    activity = np.array([p.activity for p in people])
    counts = 1 + np.minimum(rng.poisson(EXTRA_VISITS_PER_DAY * activity), 2)
    viewers = [p.index for p, count in zip(people, counts, strict=True) for _ in range(count)]
    visits = []
    for k, i in enumerate(rng.permutation(len(viewers))):
        pages = 2 if rng.random() < SECOND_PAGE else 1
        draws = rng.random((pages * PAGE_SIZE, DRAWS))
        visits.append(Visit(first + k, day, viewers[i], pages, PAGE_SIZE, draws))
    return visits
