"""One person's data export, written as a zip archive.

One JSON file per kind (`profile.json`, `posts.json`, `comments.json`, `likes.json`,
`follows.json`, `messages.json`, `notifications.json`, `sessions.json`, `media.json`),
each written row by row as the rows are read, a page at a time; the media files under
`media/<media id>/`; and `README.txt`. Media are exported as processing made them, never
as uploaded (an original may carry metadata, such as a photo's location): a picture's
largest variant, a video's poster and its largest HLS rendition (playlist and segments).
"""

from __future__ import annotations

import json
import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from storage.media_store import MediaStore, media_key
from storage.repositories.personal_data import PersonalData

# Each JSON file, what it holds (the README), and the kinds read into it.
FILES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("posts.json", "your posts (not those you deleted)", ("posts",)),
    ("comments.json", "your comments", ("comments",)),
    ("likes.json", "the posts you like", ("likes",)),
    ("follows.json", "who you follow, and who follows you", ("following", "followers")),
    ("messages.json", "the messages you sent, with their room ids", ("messages",)),
    ("notifications.json", "your notifications", ("notifications",)),
    ("sessions.json", "your sign-ins: when and from where (no tokens)", ("sessions",)),
)
STEPS = 2 + len(FILES)  # the profile, the JSON files, the media

README = """Nova: your data
===============

This archive holds the data Nova keeps about your account, as of {made} (UTC).
Times are ISO 8601 in UTC; ids are UUIDs.

profile.json        your profile and account (no password or its hash)
{files}
media.json          your pictures and videos: kind, file name, size, where attached
media/<id>/         each one's files, as Nova serves them: a picture's largest version;
                    a video's poster and its best quality stream (HLS: a playlist, .m3u8,
                    and its segments). Files as you uploaded them are not included: they
                    may carry metadata (such as where a photo was taken).

Messages other people sent are theirs and are not in this archive.
"""

Progress = Callable[[float], Awaitable[None]]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _dump(value: Any) -> bytes:
    return json.dumps(value, default=_jsonable, ensure_ascii=False).encode()


async def _write_list(out: IO[bytes], rows: AsyncIterator[dict[str, Any]]) -> None:
    out.write(b"[")
    first = True
    async for row in rows:
        out.write(b"\n  " if first else b",\n  ")
        out.write(_dump(row))
        first = False
    out.write(b"\n]" if not first else b"]")


async def write_archive(
    path: Path, data: PersonalData, store: MediaStore, user_id: uuid.UUID, progress: Progress
) -> None:
    """The archive of `user_id`'s data at `path`; `progress` hears each step's end."""
    done = 0

    async def step() -> None:
        nonlocal done
        done += 1
        await progress(done / STEPS)

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        made = datetime.now().astimezone().isoformat(timespec="seconds")
        listing = "\n".join(f"{name:<19} {what}" for name, what, _ in FILES)
        archive.writestr("README.txt", README.format(made=made, files=listing))
        archive.writestr("profile.json", _dump(await data.profile(user_id)))
        await step()
        for name, _, kinds in FILES:
            with archive.open(name, "w") as out:
                if len(kinds) == 1:
                    await _write_list(out, data.rows(kinds[0], user_id))
                else:
                    for i, kind in enumerate(kinds):
                        out.write(b"{" if i == 0 else b",\n")
                        out.write(_dump(kind) + b": ")
                        await _write_list(out, data.rows(kind, user_id))
                    out.write(b"}")
            await step()
        await _write_media(archive, data, store, user_id)
        await step()


async def _write_media(
    archive: zipfile.ZipFile, data: PersonalData, store: MediaStore, user_id: uuid.UUID
) -> None:
    # A zip takes one entry at a time: the listing goes to a local file while the media
    # files go into the archive, and joins them at the end.
    with tempfile.TemporaryDirectory() as work:
        listed = Path(work) / "media.json"
        with listed.open("wb") as listing:
            listing.write(b"[")
            first = True
            async for media in data.rows("media", user_id):
                files = chosen_files(store, media)
                media["files"] = [f"media/{media['id']}/{file}" for file in files]
                media.pop("variants", None)
                listing.write((b"\n  " if first else b",\n  ") + _dump(media))
                first = False
                for file in files:
                    local = Path(work) / "file"
                    store.download_to(media_key(media["id"], file), local)
                    archive.write(local, f"media/{media['id']}/{file}")
                    local.unlink()
            listing.write(b"\n]" if not first else b"]")
        archive.write(listed, "media.json")


def chosen_files(store: MediaStore, media: dict[str, Any]) -> list[str]:
    """The files of one media that are exported (see the module's docstring)."""
    variants = media.get("variants") or []
    if isinstance(variants, str):
        variants = json.loads(variants)
    if media["kind"] == "image":
        if not variants:
            return []
        largest = max(variants, key=lambda v: (v.get("width") or 0) * (v.get("height") or 0))
        return [largest["file"]]
    files = [v["file"] for v in variants if v["name"] == "poster"]
    renditions = [v for v in variants if v["name"] not in ("hls", "poster")]
    if renditions:
        best = max(renditions, key=lambda v: v.get("height") or 0)
        playlist = store.read(media_key(media["id"], best["file"])).decode()
        files.append(best["file"])
        files += [line.strip() for line in playlist.splitlines() if _segment(line)]
    return files


def _segment(line: str) -> bool:
    """A playlist line naming a file of the same media (not a tag, not a URL elsewhere)."""
    name = line.strip()
    return bool(name) and not name.startswith("#") and "/" not in name
