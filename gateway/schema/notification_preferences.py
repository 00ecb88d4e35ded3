"""GraphQL operations of notification preferences: which kinds notify in the app and by
email, the email digest switch, muted users and rooms (`gateway.services.notifications`)."""

from __future__ import annotations

import uuid

import strawberry

from gateway.schema.chat_types import ChatRoom
from gateway.schema.notifications import NotificationKind
from gateway.schema.types import NovaInfo, User, load_users, parse_id
from gateway.services.notifications import KindChoice
from storage.repositories.notification_preferences import Preferences
from storage.repositories.notifications import KINDS


@strawberry.type(description="One kind of notification's channels.")
class KindPreference:
    kind: NotificationKind
    in_app: bool = strawberry.field(description="Written to your inbox and pushed live.")
    email: bool = strawberry.field(
        description="Listed in the email digest sent while you are away."
    )


@strawberry.type(description="What notifies you, and how.")
class NotificationPreferences:
    kinds: list[KindPreference] = strawberry.field(description="Every kind, in a fixed order.")
    email_digest: bool = strawberry.field(
        description="Whether notification emails are sent at all; an email's unsubscribe "
        "link turns it off."
    )
    owner: strawberry.Private[uuid.UUID]
    muted_user_ids: strawberry.Private[frozenset[uuid.UUID]]
    muted_room_ids: strawberry.Private[frozenset[uuid.UUID]]

    @classmethod
    def from_preferences(cls, preferences: Preferences) -> NotificationPreferences:
        return cls(
            kinds=[
                KindPreference(
                    kind=NotificationKind(kind),
                    in_app=kind in preferences.in_app,
                    email=kind in preferences.email,
                )
                for kind in KINDS
            ],
            email_digest=preferences.email_enabled,
            owner=preferences.user_id,
            muted_user_ids=preferences.muted_users,
            muted_room_ids=preferences.muted_rooms,
        )

    @strawberry.field(description="People whose acts never notify you, most recently muted first.")
    async def muted_users(self, info: NovaInfo) -> list[User]:
        order = await info.context.runtime.notifications.muted_users(self.owner)
        users = await load_users(info, [i for i in order if i in self.muted_user_ids])
        return [user for user in users if user is not None]

    @strawberry.field(description="Rooms whose messages never notify you (those you are still in).")
    async def muted_rooms(self, info: NovaInfo) -> list[ChatRoom]:
        ids = sorted(self.muted_room_ids)
        records = await info.context.loaders.rooms.load_many(ids)
        return [ChatRoom.from_record(r) for r in records if r is not None]


@strawberry.input(description="One kind's channels.")
class KindPreferenceInput:
    kind: NotificationKind
    in_app: bool
    email: bool


@strawberry.input
class UpdateNotificationPreferencesInput:
    kinds: list[KindPreferenceInput] | None = strawberry.field(
        default=None, description="Kinds to change, each at most once; the others are kept."
    )
    email_digest: bool | None = strawberry.field(
        default=None, description="Turn notification emails on or off; omitted keeps it."
    )


@strawberry.type
class NotificationPreferencesQuery:
    @strawberry.field(description="Your notification preferences.")
    async def notification_preferences(self, info: NovaInfo) -> NotificationPreferences:
        viewer = info.context.require_user().user_id
        found = await info.context.runtime.notifications.preferences(viewer)
        return NotificationPreferences.from_preferences(found)


@strawberry.type
class NotificationPreferencesMutation:
    @strawberry.mutation(description="Change which kinds notify you in the app and by email.")
    async def update_notification_preferences(
        self, info: NovaInfo, input: UpdateNotificationPreferencesInput
    ) -> NotificationPreferences:
        viewer = info.context.require_user().user_id
        choices = [KindChoice(k.kind.value, k.in_app, k.email) for k in input.kinds or []]
        found = await info.context.runtime.notifications.update_preferences(
            viewer, choices, input.email_digest
        )
        return NotificationPreferences.from_preferences(found)

    @strawberry.mutation(description="Stop someone's acts from notifying you (they are not told).")
    async def mute_user(self, info: NovaInfo, user_id: strawberry.ID) -> NotificationPreferences:
        return await _mute_user(info, user_id, muted=True)

    @strawberry.mutation(description="Let someone's acts notify you again.")
    async def unmute_user(self, info: NovaInfo, user_id: strawberry.ID) -> NotificationPreferences:
        return await _mute_user(info, user_id, muted=False)

    @strawberry.mutation(description="Stop a chat room you are in from notifying you.")
    async def mute_room(self, info: NovaInfo, room_id: strawberry.ID) -> NotificationPreferences:
        return await _mute_room(info, room_id, muted=True)

    @strawberry.mutation(description="Let a chat room notify you again.")
    async def unmute_room(self, info: NovaInfo, room_id: strawberry.ID) -> NotificationPreferences:
        return await _mute_room(info, room_id, muted=False)


async def _mute_user(
    info: NovaInfo, user_id: strawberry.ID, *, muted: bool
) -> NotificationPreferences:
    viewer = info.context.require_user().user_id
    other = parse_id(user_id, "userId")
    found = await info.context.runtime.notifications.mute_user(viewer, other, muted)
    return NotificationPreferences.from_preferences(found)


async def _mute_room(
    info: NovaInfo, room_id: strawberry.ID, *, muted: bool
) -> NotificationPreferences:
    viewer = info.context.require_user().user_id
    room = parse_id(room_id, "roomId")
    found = await info.context.runtime.notifications.mute_room(viewer, room, muted)
    return NotificationPreferences.from_preferences(found)
