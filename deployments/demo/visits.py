"""One simulated visit: read the ranked feed a page or two deep, decide what to do with each
post (`deployments.demo.preferences`), report it with `trackEvents`, then like, comment and
share.

The events go first and the likes and comments after: `nova models train` labels an
impression engaged by what its user did at or after it, and `trackEvents` stamps the
events when it takes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployments.demo.client import Account, Client
from deployments.demo.operations import COMMENT, LIKE, RANKED_FEED, SHARE, TRACK
from deployments.demo.plan import Visit
from deployments.demo.preferences import Decision, Shown, World, tags_of
from deployments.demo.tally import Tally

MAX_EVENTS_PER_CALL = 100  # trackEvents' limit


@dataclass(frozen=True)
class Directory:
    """Server ids of what this run made, mapped back to the plan."""

    user_of: dict[str, int]  # server user id → plan user index
    post_of: dict[str, int]  # server post id → plan post index


async def visit(
    client: Client,
    account: Account,
    plan_visit: Visit,
    world: World,
    names: Directory,
    tally: Tally,
) -> None:
    shown = await read_feed(client, account, plan_visit, names, tally)
    decisions = world.decide(plan_visit, shown)
    world.record(plan_visit.viewer, decisions)
    events = events_of(decisions)
    for start in range(0, len(events), MAX_EVENTS_PER_CALL):
        chunk = events[start : start + MAX_EVENTS_PER_CALL]
        data = await client.call(TRACK, {"events": chunk}, account=account, idempotent=False)
        tally.events_sent += len(chunk)
        tally.events_accepted += int(data["trackEvents"])
    tally.impressions += len(decisions)
    tally.engaged += sum(d.engaged for d in decisions)
    for decision in decisions:
        await act(client, account, decision, tally)
    tally.visits += 1


async def read_feed(
    client: Client, account: Account, plan_visit: Visit, names: Directory, tally: Tally
) -> list[Shown]:
    """The posts the visit sees, page by page, in the order shown."""
    shown: list[Shown] = []
    after: str | None = None
    for _ in range(plan_visit.pages):
        data = await client.call(
            RANKED_FEED, {"first": plan_visit.page_size, "after": after}, account=account
        )
        page = data["feed"]
        edges: list[dict[str, Any]] = page["edges"]
        tally.feed_pages += 1
        tally.pages_by_version[next((e["modelVersion"] or "" for e in edges), "")] += 1
        shown += [shown_of(edge, len(shown) + k, names) for k, edge in enumerate(edges)]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    return shown


def shown_of(edge: dict[str, Any], position: int, names: Directory) -> Shown:
    node = edge["node"]
    shared = node.get("sharedPost")
    return Shown(
        post_id=node["id"],
        position=position,
        model_version=edge.get("modelVersion"),
        post=names.post_of.get(node["id"]),
        author=names.user_of.get(node["author"]["id"]),
        tags=tags_of(shared["tags"] if shared else node["tags"]),
        popularity=node["likeCount"] + node["commentCount"] + node["shareCount"],
        text_length=len(node["text"]),
    )


def events_of(decisions: list[Decision]) -> list[dict[str, Any]]:
    """Every impression first, then the clicks and dwell times, as a client reports them."""

    def event(kind: str, shown: Shown, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "postId": shown.post_id,
            "modelVersion": shown.model_version,
            "position": shown.position,
            **extra,
        }

    events = [event("IMPRESSION", d.shown) for d in decisions]
    for d in decisions:
        if d.click:
            events.append(event("CLICK", d.shown))
        if d.dwell_ms is not None:
            events.append(event("DWELL", d.shown, dwellMs=d.dwell_ms))
    return events


async def act(client: Client, account: Account, decision: Decision, tally: Tally) -> None:
    """The likes, comments and shares of one decision (likes are idempotent; a comment or a
    share is made once, and a failed one is not retried after the server may have done it)."""
    post_id = decision.shown.post_id
    if decision.like:
        await client.call(LIKE, {"postId": post_id}, account=account)
        tally.likes += 1
    if decision.comment is not None:
        await client.call(
            COMMENT,
            {"postId": post_id, "text": decision.comment},
            account=account,
            idempotent=False,
        )
        tally.comments += 1
    if decision.share is not None:
        await client.call(
            SHARE, {"postId": post_id, "text": decision.share or None}, account=account,
            idempotent=False,
        )  # fmt: skip
        tally.shares += 1
