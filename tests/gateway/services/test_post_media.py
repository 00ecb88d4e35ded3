"""Posts with pictures: attached in order, shown to readers, and refused when the media is
not the author's, not uploaded, failed, used before, or too many."""

from __future__ import annotations

import asyncio

import pytest
from gql.transport.exceptions import TransportQueryError

from deployments.settings import Settings
from storage.db import Database
from tests.support.media import (
    create_upload,
    png_claiming,
    processed,
    until_done,
    uploaded_image,
)
from tests.support.social import FOLLOW, call, make_members

pytestmark = pytest.mark.stack

CREATE_POST = """
mutation($text: String!, $media: [ID!]) {
  createPost(input: {text: $text, mediaIds: $media}) { id media { id status } }
}
"""
POST = """
query($id: ID!) {
  post(id: $id) { text media { id status width height blurhash url variants { name url } } }
}
"""


async def test_a_post_carries_its_pictures_in_order(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, reader = await make_members(db, deployed, 2)
    assert (await call(http_url, reader, FOLLOW, id=author.id)).ok()
    first = await uploaded_image(http_url, author, 64, 48)
    second = await uploaded_image(http_url, author, 48, 64)
    created = (await call(http_url, author, CREATE_POST, text="", media=[second, first])).ok()
    assert [m["id"] for m in created["createPost"]["media"]] == [second, first]

    shown = (await call(http_url, reader, POST, id=created["createPost"]["id"])).ok()["post"]
    assert shown["text"] == ""
    assert [m["id"] for m in shown["media"]] == [second, first]
    assert [(m["width"], m["height"]) for m in shown["media"]] == [(48, 64), (64, 48)]
    assert all(m["status"] == "READY" and m["blurhash"] and m["url"] for m in shown["media"])


async def test_media_that_cannot_be_attached_is_refused_and_nothing_is_posted(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, other = await make_members(db, deployed, 2)
    mine = await uploaded_image(http_url, author)
    theirs = await uploaded_image(http_url, other)
    failed = await processed(http_url, author, png_claiming(20_000, 20_000), "image/png")
    assert failed["status"] == "FAILED"
    not_uploaded = (await create_upload(http_url, author, b"x" * 10))["id"]
    many = [await uploaded_image(http_url, author, ready=False) for _ in range(5)]

    for media in (
        [theirs],  # someone else's
        [failed["id"]],  # processing failed
        [not_uploaded],  # no bytes yet
        [mine, mine],  # twice
        many,  # more than 4
        ["00000000-0000-0000-0000-000000000000"],  # unknown
    ):
        reply = await call(http_url, author, CREATE_POST, text="with media", media=media)
        assert reply.codes == ["BAD_USER_INPUT"], (media, reply.body)

    # Nothing above used `mine` up: it attaches once, and only once.
    assert (await call(http_url, author, CREATE_POST, text="ok", media=[mine])).ok()
    again = await call(http_url, author, CREATE_POST, text="again", media=[mine])
    assert again.codes == ["BAD_USER_INPUT"]
    # Without media, the text is still required.
    assert (await call(http_url, author, CREATE_POST, text="", media=[])).codes == [
        "BAD_USER_INPUT"
    ]


async def test_a_reader_follows_a_posts_media_until_it_is_processed(
    http_url: str, db: Database, deployed: Settings
) -> None:
    author, reader = await make_members(db, deployed, 2)
    processing = await uploaded_image(http_url, author, 64, 48, ready=False)
    unposted = await uploaded_image(http_url, author, ready=False)
    assert (await call(http_url, author, CREATE_POST, text="soon", media=[processing])).ok()
    followed = await asyncio.wait_for(until_done(http_url, reader, processing), 60)
    assert followed["status"] == "READY"
    with pytest.raises(TransportQueryError) as refused:  # not a post's, not the reader's
        await asyncio.wait_for(until_done(http_url, reader, unposted), 60)
    assert (refused.value.errors or [{}])[0].get("extensions", {}).get("code") == "NOT_FOUND"
