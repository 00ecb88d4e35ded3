"""GraphQL operations of stories: `createStory`, `storyFeed`, `myStories`, `story`,
`viewStory`, `storyViewers`, `deleteStory` (`gateway.services.stories` has the rules)."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from gateway.schema.media import Media, media_of
from gateway.schema.types import Connection, Edge, NovaInfo, User, load_user, parse_id
from storage.errors import NotFound
from storage.repositories.stories import StoryRecord


@strawberry.type(description="A picture or video shown to your followers for 24 hours.")
class Story:
    id: strawberry.ID
    text: str
    created_at: datetime
    expires_at: datetime = strawberry.field(
        description="When it disappears from every read (24 hours after it was made)."
    )
    seen: bool = strawberry.field(description="Whether you have viewed it (`viewStory`).")
    record: strawberry.Private[StoryRecord]

    @classmethod
    def from_record(cls, record: StoryRecord) -> Story:
        return cls(
            id=strawberry.ID(str(record.id)),
            text=record.text,
            created_at=record.created_at,
            expires_at=record.expires_at,
            seen=record.seen,
            record=record,
        )

    @strawberry.field
    async def author(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.record.author_id)

    @strawberry.field(
        description="Its picture or video; the URLs are signed and stop working when the "
        "story expires, at the latest."
    )
    async def media(self, info: NovaInfo) -> Media | None:
        record = await info.context.loaders.media.load(self.record.media_id)
        return media_of(info, record, until=self.record.expires_at) if record else None

    @strawberry.field(description="How many people viewed it; for its author only (else null).")
    async def view_count(self, info: NovaInfo) -> int | None:
        viewer = info.context.viewer_id
        if viewer != self.record.author_id:
            return None
        counts = await info.context.runtime.stories.view_counts([self.record.id])
        return counts.get(self.record.id, 0)


@strawberry.type(description="One author's live stories in `storyFeed`, oldest first.")
class StoryAuthor:
    has_unseen: bool = strawberry.field(description="Whether any of them you have not viewed.")
    stories: list[Story]
    author_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    async def author(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.author_id)


@strawberry.type
class StoryViewer:
    viewed_at: datetime
    user_id: strawberry.Private[uuid.UUID]

    @strawberry.field
    async def user(self, info: NovaInfo) -> User | None:
        return await load_user(info, self.user_id)


@strawberry.input
class CreateStoryInput:
    media_id: strawberry.ID = strawberry.field(
        description="Your own completed upload (a picture or a video), not used before."
    )
    text: str = strawberry.field(default="", description="Up to 500 characters.")


@strawberry.type
class StoryQuery:
    @strawberry.field(
        description="Stories of the people you follow: authors with stories you have not "
        "viewed first, then by their newest story; each author's stories oldest first."
    )
    async def story_feed(self, info: NovaInfo, first: int | None = 20) -> list[StoryAuthor]:
        viewer = info.context.require_user().user_id
        authors = await info.context.runtime.stories.feed(viewer, first)
        return [
            StoryAuthor(
                has_unseen=entry.has_unseen,
                stories=[Story.from_record(story) for story in entry.stories],
                author_id=entry.author_id,
            )
            for entry in authors
        ]

    @strawberry.field(description="Your own live stories, oldest first.")
    async def my_stories(self, info: NovaInfo) -> list[Story]:
        viewer = info.context.require_user().user_id
        return [Story.from_record(s) for s in await info.context.runtime.stories.mine(viewer)]

    @strawberry.field(description="A live story you may see; null if there is none.")
    async def story(self, info: NovaInfo, id: strawberry.ID) -> Story | None:
        viewer = info.context.require_user().user_id
        try:
            return Story.from_record(await info.context.runtime.stories.get(viewer, parse_id(id)))
        except NotFound:
            return None

    @strawberry.field(description="Who viewed your story, newest first.")
    async def story_viewers(
        self,
        info: NovaInfo,
        story_id: strawberry.ID,
        first: int | None = 20,
        after: str | None = None,
    ) -> Connection[StoryViewer]:
        viewer = info.context.require_user().user_id
        edges, more = await info.context.runtime.stories.viewers(
            viewer, parse_id(story_id, "storyId"), first, after
        )
        return Connection.of(
            [
                Edge(cursor=cursor, node=StoryViewer(viewed_at=v.viewed_at, user_id=v.viewer_id))
                for cursor, v in edges
            ],
            more,
        )


@strawberry.type
class StoryMutation:
    @strawberry.mutation(description="Publish a story, shown to your followers for 24 hours.")
    async def create_story(self, info: NovaInfo, input: CreateStoryInput) -> Story:
        viewer = info.context.require_user().user_id
        story = await info.context.runtime.stories.create(
            viewer, parse_id(input.media_id, "mediaId"), input.text
        )
        return Story.from_record(story)

    @strawberry.mutation(description="Record that you viewed a story (once; yours are not).")
    async def view_story(self, info: NovaInfo, id: strawberry.ID) -> Story:
        viewer = info.context.require_user().user_id
        return Story.from_record(await info.context.runtime.stories.view(viewer, parse_id(id)))

    @strawberry.mutation(description="Take one of your live stories down.")
    async def delete_story(self, info: NovaInfo, id: strawberry.ID) -> bool:
        viewer = info.context.require_user().user_id
        await info.context.runtime.stories.delete(viewer, parse_id(id))
        return True
