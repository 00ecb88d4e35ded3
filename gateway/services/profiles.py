"""Profiles and blocks: the parts of a user that other users see or are kept away from."""

from __future__ import annotations

import base64
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from actors.counter_client import CounterClient
from gateway.services.relations import ViewerRelations
from gateway.services.users import UserCache
from storage.db import Database
from storage.errors import InvalidInput, NotFound
from storage.events import Event
from storage.repositories.profiles import ProfileStore
from storage.repositories.users import UserRecord

MAX_DISPLAY_NAME = 80
MAX_BIO = 500
MAX_AVATAR_URL = 2048
MAX_PAGE = 100


@dataclass(frozen=True)
class ProfileChanges:
    """Fields to change; `None` clears a field, a field absent from `fields` is kept."""

    fields: dict[str, str | None]


def clean_profile(
    display_name: str | None, bio: str | None, avatar_url: str | None, given: set[str]
) -> ProfileChanges:
    """Validate the fields the client sent (`given`); blank strings clear."""
    fields: dict[str, str | None] = {}
    if "display_name" in given:
        value = (display_name or "").strip() or None
        if value is not None and len(value) > MAX_DISPLAY_NAME:
            raise InvalidInput(f"displayName must be at most {MAX_DISPLAY_NAME} characters")
        if value is not None:
            check_visible(value, "displayName")
        fields["display_name"] = value
    if "bio" in given:
        value = (bio or "").strip() or None
        if value is not None and len(value) > MAX_BIO:
            raise InvalidInput(f"bio must be at most {MAX_BIO} characters")
        fields["bio"] = value
    if "avatar_url" in given:
        value = (avatar_url or "").strip() or None
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in {"https", "http"} or not parts.netloc:
                raise InvalidInput("avatarUrl must be an http(s) URL")
            if len(value) > MAX_AVATAR_URL:
                raise InvalidInput(f"avatarUrl must be at most {MAX_AVATAR_URL} characters")
        fields["avatar_url"] = value
    return ProfileChanges(fields)


# Characters that draw nothing or reorder what follows: control characters, format
# characters (bidi embeddings, overrides, isolates and marks; zero-width spaces and
# joiners; soft hyphens; tags), surrogates, private use, line and paragraph separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_ZWJ = "\u200d"  # joins emoji into one (a family, a flag): kept between pictographs
_ZWNJ = "\u200c"  # keeps letters apart in Persian and Indic words: kept between them


def check_visible(text: str, what: str) -> None:
    """Refuse text with characters that draw nothing or reorder the text around them
    (`InvalidInput`): a name with U+202E shows as another name, one with U+200B looks
    like a name it is not. A zero-width joiner is kept between emoji, and a zero-width
    non-joiner between letters of scripts other than Latin, where they are spelling."""
    for i, char in enumerate(text):
        if unicodedata.category(char) not in _INVISIBLE:
            continue
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if char == _ZWJ and _emoji_part(before) and _category(after) == "So":
            continue
        if char == _ZWNJ and _script_letter(before) and _script_letter(after):
            continue
        raise InvalidInput(
            f"{what} must not contain invisible or direction-changing characters "
            f"(U+{ord(char):04X} at position {i})"
        )


def _category(char: str) -> str:
    return unicodedata.category(char) if char else ""


def _emoji_part(char: str) -> bool:
    """A pictograph, or what may end one (a skin tone, a variation selector)."""
    return _category(char) in ("So", "Sk", "Mn")


def _script_letter(char: str) -> bool:
    return not char.isascii() and _category(char).startswith("L")


@dataclass(frozen=True)
class BlockedPage:
    users: list[tuple[str, uuid.UUID]]  # (cursor, blocked user id), newest first
    has_next_page: bool


def encode_cursor(created_at: datetime, user_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{user_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, user = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(user)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("after is not a valid cursor") from exc


def page_size(first: int | None) -> int:
    if first is None:
        return 20
    if not 0 <= first <= MAX_PAGE:
        raise InvalidInput(f"first must be between 0 and {MAX_PAGE}")
    return first


class Profiles:
    def __init__(
        self,
        db: Database,
        users: UserCache,
        counters: CounterClient,
        relations: ViewerRelations,
    ) -> None:
        self._store = ProfileStore(db)
        self._users = users
        self._counters = counters
        self._relations = relations

    async def find_by_username(self, username: str) -> uuid.UUID | None:
        return await self._store.find_by_username(username.strip())

    async def update(self, user_id: uuid.UUID, changes: ProfileChanges) -> UserRecord:
        if not changes.fields:
            current = await self._store.user(user_id)
            if current is None:
                raise NotFound("account no longer exists")
            return current
        changed = list(changes.fields)  # only the three known names reach this point
        user = await self._store.update(
            user_id,
            changes.fields,
            lambda user: Event(
                "user.profile.updated",
                str(user_id),
                {"user_id": str(user_id), "changed": changed, "version": user.version},
            ),
        )
        if user is None:
            raise NotFound("account no longer exists")
        await self._users.changed([user])
        return user

    async def block(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        if blocker == blocked:
            raise InvalidInput("you cannot block yourself")
        change = await self._store.block(
            blocker, blocked, _block_event("created", blocker, blocked)
        )
        if change.changed:
            await self._relations.blocks_changed(blocker, blocked)
            await self._relations.follows_changed([blocker, blocked], change.counters)
        await self._counters.observe(change.counters)
        return True

    async def unblock(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        deleted = await self._store.unblock(
            blocker, blocked, _block_event("deleted", blocker, blocked)
        )
        if deleted:
            await self._relations.blocks_changed(blocker, blocked)
        return True

    async def has_blocked(self, blocker: uuid.UUID, blocked: uuid.UUID) -> bool:
        return await self._store.has_blocked(blocker, blocked)

    async def blocked_users(
        self, blocker: uuid.UUID, first: int | None, after: str | None
    ) -> BlockedPage:
        limit = page_size(first)
        since = decode_cursor(after) if after else None
        rows = await self._store.blocked_users(blocker, since, limit + 1)
        page = [(encode_cursor(row.created_at, row.id), row.id) for row in rows[:limit]]
        return BlockedPage(page, len(rows) > limit)


def _block_event(change: str, blocker: uuid.UUID, blocked: uuid.UUID) -> Event:
    """`graph.block.created` or `graph.block.deleted`, keyed by the blocker."""
    return Event(
        f"graph.block.{change}",
        str(blocker),
        {"blocker_id": str(blocker), "blocked_id": str(blocked)},
    )
