"""Which files of a media go into a data export: processed ones only, never the original."""

from __future__ import annotations

import uuid
from typing import Any, cast

from actors.exports.archive import chosen_files
from storage.media_store import MediaStore


class _Playlists:
    """A store that holds one rendition's playlist."""

    def __init__(self, playlist: str) -> None:
        self._playlist = playlist
        self.read_keys: list[str] = []

    def read(self, key: str) -> bytes:
        self.read_keys.append(key)
        return self._playlist.encode()


def _store(playlist: str = "") -> Any:
    return _Playlists(playlist)


def test_a_picture_exports_its_largest_variant() -> None:
    media = {
        "id": uuid.uuid4(),
        "kind": "image",
        "variants": [
            {"name": "thumb", "file": "thumb.webp", "width": 64, "height": 48},
            {"name": "large", "file": "large.jpeg", "width": 1280, "height": 960},
            {"name": "small", "file": "small.webp", "width": 320, "height": 240},
        ],
    }
    assert chosen_files(cast(MediaStore, _store()), media) == ["large.jpeg"]


def test_a_video_exports_its_posters_and_best_rendition_with_its_segments() -> None:
    media_id = uuid.uuid4()
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nhls_720p_00000.ts\n"
        "#EXTINF:1.5,\nhls_720p_00001.ts\nhttps://elsewhere.example/x.ts\n#EXT-X-ENDLIST\n"
    )
    store = _store(playlist)
    media = {
        "id": media_id,
        "kind": "video",
        "variants": [
            {"name": "hls", "file": "hls.m3u8", "height": 720},
            {"name": "240p", "file": "hls_240p.m3u8", "height": 240},
            {"name": "720p", "file": "hls_720p.m3u8", "height": 720},
            {"name": "poster", "file": "poster.jpeg", "height": 720},
        ],
    }
    assert chosen_files(cast(MediaStore, store), media) == [
        "poster.jpeg",
        "hls_720p.m3u8",
        "hls_720p_00000.ts",
        "hls_720p_00001.ts",
    ]
    assert store.read_keys == [f"{media_id}/hls_720p.m3u8"]
