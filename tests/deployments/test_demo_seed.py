"""`nova demo seed`: the plan (deterministic, heavy-tailed), the hidden preference model
(engagement follows it, and a model of what Nova's features see can learn it), the client's
manners with rate limits, and one seed of a small community against the test stack."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from typing import Any

import httpx
import numpy as np
import pytest

from deployments.cli import build_parser
from deployments.demo.client import Account, Budgets, Client
from deployments.demo.plan import DRAWS, EMAIL_DOMAIN, Plan, Visit, make_plan
from deployments.demo.preferences import Shown, World
from deployments.demo.progress import Progress
from deployments.demo.texts import TOPICS
from deployments.demo.visits import events_of
from ranking.schema import NAMES
from ranking.train import Dataset, auc, fit_logistic
from storage.db import Database
from tests.conftest import nova_cli, wait_until
from tests.support.graphql import PASSWORD, REGISTER, post

WIDE = Budgets(mutations_per_s=1e6, mutations_burst=1000, queries_per_s=1e6, queries_burst=1000)


# -- the plan ---------------------------------------------------------------------------


def test_a_seed_names_one_community() -> None:
    first, again, other = make_plan(40, 2, 7), make_plan(40, 2, 7), make_plan(40, 2, 8)
    assert first.digest() == again.digest()
    assert first.digest() != other.digest()
    assert [u.username for u in first.users] == [f"demo_{i:04d}" for i in range(40)]
    assert all(u.email.endswith("@" + EMAIL_DOMAIN) for u in first.users)
    assert {p.day for p in first.posts} == {0, 1}
    assert {v.day for v in first.visits} == {0, 1}


def test_the_follow_graph_has_a_heavy_tail() -> None:
    plan = make_plan(300, 1, 0)
    assert len(set(plan.follows)) == len(plan.follows)
    assert all(a != b for a, b in plan.follows)
    followers = np.array(sorted(Counter(b for _, b in plan.follows).values(), reverse=True))
    followers = np.pad(followers, (0, 300 - len(followers)))
    # A few accounts are followed by many, most by a handful.
    assert followers[0] >= 10 * np.median(followers)
    assert followers[:30].sum() >= 0.5 * followers.sum()


def test_posts_carry_their_topics_as_tags() -> None:
    plan = make_plan(50, 2, 3)
    assert plan.posts
    for planned in plan.posts:
        assert 1 <= len(planned.text) <= 2000
        assert all(f"#{TOPICS[t]}" in planned.text for t in planned.tags)
    # Mostly what each author likes.
    liked = [plan.users[p.author].taste[p.tags[0]] for p in plan.posts]
    assert np.mean(liked) > 0.5


# -- the hidden preferences ------------------------------------------------------------


def _shown(world: World, viewer: int, post: int, position: int = 0) -> Shown:
    planned = world.plan.posts[post]
    return Shown(
        f"p{post}", position, "v0", post, planned.author, planned.tags, 0, len(planned.text)
    )


def test_engagement_follows_the_hidden_preferences() -> None:
    plan = make_plan(80, 1, 11)
    world = World(plan)
    rng = np.random.default_rng(0)
    pairs = [
        (int(v), int(p))
        for v, p in zip(
            rng.integers(0, 80, 6000), rng.integers(0, len(plan.posts), 6000), strict=True
        )
        if plan.posts[int(p)].author != v
    ]
    odds = np.array([world.probability(v, _shown(world, v, p)) for v, p in pairs])
    engaged = np.array(
        [
            world.decide(_one_post_visit(k, v, rng), [_shown(world, v, p)])[0].engaged
            for k, (v, p) in enumerate(pairs)
        ]
    )
    assert 0.05 < engaged.mean() < 0.5
    assert auc(odds, engaged.astype(np.float32)) > 0.7
    follows = np.array([(v, plan.posts[p].author) in world.follows for v, p in pairs])
    assert engaged[follows].mean() > 1.5 * engaged[~follows].mean()
    taste = np.array([world.plan.users[v].taste[plan.posts[p].tags[0]] for v, p in pairs])
    assert engaged[taste > 1].mean() > engaged[taste < -1].mean()


def _one_post_visit(index: int, viewer: int, rng: np.random.Generator) -> Visit:
    return Visit(index, 0, viewer, pages=1, page_size=1, draws=rng.random((1, DRAWS)))


def _first_visit(plan: Plan) -> tuple[Visit, list[int]]:
    """The plan's first visit and posts it could be shown (not the viewer's own)."""
    visit = plan.visits[0]
    return visit, [p.index for p in plan.posts if p.author != visit.viewer][: visit.slots]


def test_the_same_posts_shown_give_the_same_decisions() -> None:
    plan = make_plan(30, 1, 5)
    visit, posts = _first_visit(plan)

    def decide() -> list[Any]:
        world = World(plan)
        return world.decide(visit, [_shown(world, visit.viewer, p, k) for k, p in enumerate(posts)])

    assert decide() == decide()


def test_engagement_moves_the_state_at_the_end_of_the_day() -> None:
    plan = make_plan(30, 2, 5)
    world = World(plan)
    post = plan.posts[0]
    viewer = next(u.index for u in plan.users if u.index != post.author)
    shown = _shown(world, viewer, post.index)
    before = world.logit(viewer, shown)
    decision = world.decide(plan.visits[0], [shown])[0]
    liked = type(decision)(shown, engaged=True, click=True, like=True, comment="Nice.")
    world.record(viewer, [liked])
    assert world.logit(viewer, shown) == before  # decisions within a day read its start
    world.end_day()
    assert world.affinity[(viewer, post.author)] == 2
    assert world.popularity[post.index] == 2
    assert (viewer, shown.post_id) in world.liked


def test_a_visit_reports_impressions_then_what_counts_as_engaged() -> None:
    plan = make_plan(30, 1, 2)
    world = World(plan)
    visit, posts = _first_visit(plan)
    decisions = world.decide(
        visit, [_shown(world, visit.viewer, p, k) for k, p in enumerate(posts)]
    )
    events = events_of(decisions)
    kinds = [e["kind"] for e in events]
    assert kinds[: len(decisions)] == ["IMPRESSION"] * len(decisions)
    assert [e["position"] for e in events[: len(decisions)]] == list(range(len(decisions)))
    for d in decisions:
        if d.engaged:  # one thing `nova models train` counts as engaged
            assert d.click or (d.dwell_ms or 0) >= 5000 or d.like or d.comment
        else:
            assert not d.click
            assert not d.like
            assert d.comment is None
            assert d.share is None
            assert (d.dwell_ms or 0) < 5000
    assert all(e["dwellMs"] >= 0 for e in events if e["kind"] == "DWELL")


# -- what a ranking model can learn from it ---------------------------------------------

# A hand-set ranker of raw counts, follows and recency (a starter's guess).
NAIVE = {
    "post_age_hours": -0.05, "post_likes": 0.15, "post_comments": 0.3, "post_shares": 0.3,
    "post_clicks": 0.05, "author_engagement_rate": 0.2, "viewer_author_affinity": 0.4,
    "viewer_follows_author": 1.0, "mutual_follow": 0.5,
}  # fmt: skip


class OfflineNova:
    """Nova's feature store, offline: counts kept as the consumers keep them (no decay: a
    seed lasts minutes), and the feature vector served for a (viewer, post)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.follows = set(plan.follows)
        self.counts: dict[str, Counter[Any]] = defaultdict(Counter)
        self.created: dict[int, float] = {}

    def publish(self, post: int, at: float) -> None:
        self.created[post] = at
        self.counts["author_posts"][self.plan.posts[post].author] += 1

    def candidates(self, viewer: int) -> list[int]:
        """Followees' posts, then the most engaged ones; never the viewer's own."""
        followed = {b for a, b in self.follows if a == viewer}
        mine = [p for p in self.created if self.plan.posts[p].author in followed]
        popular = sorted(self.created, key=lambda p: -self.counts["engaged"][p])[:20]
        return [p for p in dict.fromkeys(mine + popular) if self.plan.posts[p].author != viewer]

    def features(self, viewer: int, post: int, now: float) -> list[float]:
        author, c = self.plan.posts[post].author, self.counts
        follow = (viewer, author) in self.follows
        return [
            (now - self.created[post]) / 3600, len(self.plan.posts[post].text), c["likes"][post],
            c["comments"][post], c["shares"][post], c["clicks"][post],
            c["author_engaged"][author] / max(1, c["author_posts"][author]),
            c["affinity"][(viewer, author)], float(follow),
            float(follow and (author, viewer) in self.follows),
        ]  # fmt: skip

    def apply(self, viewer: int, post: int, d: Any) -> None:
        author, c = self.plan.posts[post].author, self.counts
        touched = int(d.like) + int(d.comment is not None)
        c["clicks"][post] += d.click
        c["likes"][post] += d.like
        c["comments"][post] += d.comment is not None
        c["shares"][post] += d.share is not None
        c["affinity"][(viewer, author)] += touched
        c["author_engaged"][author] += touched + int(d.share is not None)
        c["engaged"][post] += touched


def simulate(users: int, days: int, seed: int, *, day_s: float = 30.0) -> Dataset:
    """The demo offline: each visit is shown followees' posts and the most engaged ones,
    ordered by the naive ranker, with the features Nova would serve logged per impression."""
    plan = make_plan(users, days, seed)
    world, nova = World(plan), OfflineNova(plan)
    naive = np.array([NAIVE.get(name, 0.0) for name in NAMES])
    rows, labels, people = [], [], []
    for day in range(days):
        posts, visits = plan.posts_on(day), plan.visits_on(day)
        for k, planned in enumerate(posts):
            nova.publish(planned.index, (day + 0.2 * k / len(posts)) * day_s)
        for k, visit in enumerate(visits):
            viewer, now = visit.viewer, (day + 0.3 + 0.7 * k / len(visits)) * day_s
            candidates = nova.candidates(viewer)
            x = np.array([nova.features(viewer, p, now) for p in candidates])
            x = x.reshape(-1, len(NAMES))
            order = [candidates[i] for i in np.argsort(-(x @ naive), kind="stable")]
            served = dict(zip(candidates, x, strict=True))
            shown = [_shown(world, viewer, p, i) for i, p in enumerate(order[: visit.slots])]
            decisions = world.decide(visit, shown)
            for d in decisions:
                post = int(d.shown.post or 0)
                rows.append(served[post])
                labels.append(float(d.engaged))
                people.append(f"user-{viewer}")
                nova.apply(viewer, post, d)
            world.record(viewer, decisions)
        world.end_day()
    return Dataset(np.array(rows, np.float32), np.array(labels, np.float32), people)


def test_a_model_trained_on_the_impressions_beats_hand_set_rankers() -> None:
    data = simulate(60, 3, seed=0)
    holdout = data.holdout_mask()
    fit = fit_logistic(data.x[~holdout], data.y[~holdout])
    x, y = data.x[holdout], data.y[holdout]
    trained = auc(((x - fit.mean) / fit.std) @ fit.weights, y)
    recency_first = auc(-x[:, NAMES.index("post_age_hours")], y)
    naive = auc(x @ np.array([NAIVE.get(n, 0.0) for n in NAMES], np.float32), y)
    assert len(y) > 300
    assert trained > recency_first + 0.1
    assert trained > naive + 0.05


# -- the client's manners ---------------------------------------------------------------


async def test_the_client_waits_as_told_when_a_budget_is_spent() -> None:
    spent = {"message": "slow down", "extensions": {"code": "RATE_LIMITED", "retryAfter": 0.05}}
    answers = [
        httpx.Response(429, headers={"retry-after": "0.05"}, json={"errors": []}),
        httpx.Response(200, json={"data": None, "errors": [spent]}),
        httpx.Response(503, headers={"retry-after": "0.01"}, json={"errors": []}),
        httpx.Response(200, json={"data": {"follow": True}}),
    ]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[len(seen) - 1]

    client = Client(
        "http://127.0.0.1:1", WIDE, concurrency=2, transport=httpx.MockTransport(answer)
    )
    try:
        data = await client.call("mutation F { follow(userId: 1) }", idempotent=False)
    finally:
        await client.close()
    assert data == {"follow": True}
    assert len(seen) == 4
    assert client.stats.rate_limited == 2
    assert client.stats.unavailable == 1
    assert client.stats.waited_s >= 0.1


async def test_an_expired_token_is_refreshed_once() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "refreshToken" in body["query"]:
            payload = {"accessToken": "new", "refreshToken": "r2", "user": {"id": "u1"}}
            return httpx.Response(200, json={"data": {"refreshToken": payload}})
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(
                401, json={"errors": [{"extensions": {"code": "UNAUTHENTICATED"}}]}
            )
        return httpx.Response(200, json={"data": {"me": {"id": "u1"}}})

    client = Client(
        "http://127.0.0.1:1", WIDE, concurrency=1, transport=httpx.MockTransport(answer)
    )
    account = Account("demo_0000", "pw", "u1", "old", "r1")
    try:
        assert await client.call("query { me { id } }", account=account) == {"me": {"id": "u1"}}
    finally:
        await client.close()
    assert (account.access_token, account.refresh_token) == ("new", "r2")


def test_progress_writes_a_line_per_phase_when_not_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(4, out)
    progress.phase("accounts")
    progress.advance(2)
    progress.phase("follows")
    progress.advance(2)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "accounts" in lines[0]
    assert " 50%" in lines[0]
    assert "100%" in lines[1]
    assert "follows" in lines[1]


def test_the_command_line_defaults() -> None:
    args = build_parser().parse_args(["demo", "seed"])
    assert (args.users, args.days, args.seed, args.force, args.url) == (60, 3, 1, False, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "seed", "--users", "0"])


# -- against the test stack -------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.seeds_demo
async def test_a_small_community_is_seeded_through_the_api(
    http_url: str, db: Database, deployed: Any
) -> None:
    # Someone real: the seed must refuse the stack until forced.
    reply = await post(
        http_url,
        REGISTER,
        {"input": {"email": "resident@example.com", "username": "resident", "password": PASSWORD}},
    )
    assert reply.status == 200
    seed = ["demo", "seed", "--users", "24", "--days", "2", "--seed", "5", "--url", http_url]
    code, _, stderr = await nova_cli(*seed)
    assert code == 2
    assert "resident" in stderr
    assert "--force" in stderr

    code, stdout, stderr = await nova_cli(*seed, "--force", timeout_s=600)
    assert code == 0, stderr
    assert "made in" in stdout
    async with db.connection() as conn:
        demo = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM users WHERE email LIKE $1", f"%@{EMAIL_DOMAIN}"
            )
        ]
        counts = await conn.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM follows WHERE follower_id = ANY($1)) AS follows,
              (SELECT count(*) FROM posts WHERE author_id = ANY($1)) AS posts,
              (SELECT count(*) FROM posts WHERE author_id = ANY($1) AND tags <> '{}') AS tagged,
              (SELECT count(*) FROM likes WHERE user_id = ANY($1)) AS likes,
              (SELECT count(*) FROM comments WHERE author_id = ANY($1)) AS comments,
              (SELECT count(*) FROM chat_messages WHERE sender_id = ANY($1)) AS messages
            """,
            demo,
        )
    plan = make_plan(24, 2, 5)
    assert len(demo) == 24
    assert counts["follows"] == len(plan.follows)
    assert counts["posts"] >= len(plan.posts)  # and the shares
    assert counts["tagged"] >= len(plan.posts)
    assert counts["likes"] > 0
    assert counts["comments"] > 0
    assert counts["messages"] == len(plan.messages) > 0

    async def impressions() -> int:
        async with db.connection() as conn:
            found: int = await conn.fetchval(
                "SELECT count(*) FROM analytics_events WHERE kind = 'IMPRESSION' "
                "AND user_id = ANY($1)",
                demo,
            )
        return found

    assert await wait_until(impressions, timeout_s=30, message="the seed's impressions logged")
