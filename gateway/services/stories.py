"""Stories: a picture or video with a line of text, shown to the author's followers for
`NOVA_STORY_LIFETIME_S` (a day), with who viewed it.

A story is read only through `StoryRepository`, whose every query filters out what has
expired, so a story disappears from every read at its `expiresAt` to the second, before
the media processor's sweep removes its rows and files. Its media is private: fetched
through signed URLs that expire with the story at the latest.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from itertools import groupby

from gateway.services.pages import page_of
from gateway.services.profiles import decode_cursor, page_size
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.repositories.keysets import Keyed
from storage.repositories.media import MediaRepository
from storage.repositories.stories import (
    MAX_STORY_TEXT,
    StoryRecord,
    StoryRepository,
    StoryView,
)


@dataclass(frozen=True)
class AuthorStories:
    """One author's live stories in `storyFeed`, oldest first."""

    author_id: uuid.UUID
    stories: list[StoryRecord]

    @property
    def has_unseen(self) -> bool:
        return any(not story.seen for story in self.stories)


class Stories:
    def __init__(self, db: Database, lifetime_s: float) -> None:
        self._repo = StoryRepository(db)
        self._media = MediaRepository(db)
        self._lifetime_s = lifetime_s

    async def create(self, author: uuid.UUID, media_id: uuid.UUID, text: str) -> StoryRecord:
        if len(text) > MAX_STORY_TEXT:
            raise InvalidInput(f"text must be at most {MAX_STORY_TEXT} characters")
        await self._media.check_selection(author, [media_id])
        story_id = uuid.uuid4()
        event = Event(
            type="content.story.created",
            aggregate_id=str(story_id),
            payload={
                "story_id": str(story_id),
                "author_id": str(author),
                "media_id": str(media_id),
            },
        )
        return await self._repo.create(
            story_id=story_id,
            author_id=author,
            media_id=media_id,
            text=text,
            lifetime_s=self._lifetime_s,
            event=event,
        )

    async def feed(self, reader: uuid.UUID, first: int | None) -> list[AuthorStories]:
        """Authors the reader follows with live stories: those with unseen stories first,
        then by their newest story."""
        limit = page_size(first)  # at most MAX_PAGE authors
        rows = await self._repo.of_followees(reader, limit)
        return [
            AuthorStories(author, list(stories))
            for author, stories in groupby(rows, key=lambda story: story.author_id)
        ]

    async def mine(self, author: uuid.UUID) -> list[StoryRecord]:
        return await self._repo.of_author(author)

    async def get(self, reader: uuid.UUID, story_id: uuid.UUID) -> StoryRecord:
        story = await self._repo.visible(story_id, reader)
        if story is None:
            raise NotFound("story not found")
        return story

    async def view(self, viewer: uuid.UUID, story_id: uuid.UUID) -> StoryRecord:
        """Record that `viewer` saw the story (once; never the author's own views)."""
        story = await self.get(viewer, story_id)
        if story.author_id != viewer:
            await self._repo.record_view(story_id, viewer)
        return dataclasses.replace(story, seen=True)

    async def viewers(
        self, author: uuid.UUID, story_id: uuid.UUID, first: int | None, after: str | None
    ) -> tuple[list[tuple[str, StoryView]], bool]:
        """Who viewed the author's live story, newest first, with cursors, and whether
        more follow."""
        limit = page_size(first)
        bound = decode_cursor(after) if after else None
        views = await self._repo.viewers(story_id, author, bound, limit + 1)
        if views is None:
            raise NotFound("story not found")
        page = page_of([Keyed(v.viewer_id, v.viewed_at) for v in views], limit)
        edges = [(cursor, view) for (cursor, _), view in zip(page.items, views, strict=False)]
        return edges, page.has_next_page

    async def view_counts(self, story_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        return await self._repo.view_counts(story_ids)

    async def delete(self, author: uuid.UUID, story_id: uuid.UUID) -> None:
        event = Event(
            type="content.story.deleted",
            aggregate_id=str(story_id),
            payload={"story_id": str(story_id), "author_id": str(author)},
        )
        if not await self._repo.delete(story_id, author, event):
            raise NotFound("story not found")
