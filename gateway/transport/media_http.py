"""Media over plain HTTP: the PUT a signed upload URL takes, and the files processing made.

- `PUT /media/uploads/<id>?expires=…&signature=…`: the bytes of one upload
  (`gateway.services.media.Media.receive`); 204, or a JSON error with Nova's code:
  403 (a wrong signature), 410 (expired), 409 (used already), 413 (over the declared
  size), 400 (truncated), 415 (not the declared kind, or no known type).
- `GET /media/<id>/<name>`: a variant (`large.webp`, `thumb.jpeg`, …), with range requests
  (for video), `Cache-Control: public, max-age=31536000, immutable` (a variant never
  changes under its name) and `nosniff`. Originals are never served: they may carry
  metadata (a photo's location) that processing strips.
"""

from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.services.media import Media, UploadRefused
from storage.errors import InvalidInput
from storage.media_store import ORIGINAL, media_key

IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {
    ".webp": "image/webp",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status
    )


class MediaRoutes:
    def __init__(self, media: Media) -> None:
        self._media = media
        self._store = media.store

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/media/uploads/{media_id}", self.upload, methods=["PUT"]),
            Route("/media/{media_id}/{name}", self.download, methods=["GET", "HEAD"]),
        ]

    async def upload(self, request: Request) -> Response:
        try:
            media_id = uuid.UUID(request.path_params["media_id"])
            expires = int(request.query_params["expires"])
            signature = request.query_params["signature"]
        except (ValueError, KeyError):
            return _error(404, "NOT_FOUND", "no such upload URL")
        try:
            await self._media.receive(media_id, expires, signature, request.stream())
        except UploadRefused as refused:
            return _error(refused.status, refused.code, str(refused))
        except InvalidInput as invalid:
            return _error(400, "BAD_USER_INPUT", str(invalid))
        return Response(status_code=204)

    async def download(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            key = media_key(uuid.UUID(request.path_params["media_id"]), name)
        except (ValueError, InvalidInput):
            return Response(status_code=404)
        if name == ORIGINAL or PurePosixPath(name).suffix not in _TYPES:
            return Response(status_code=404)
        path = self._store.path(key)
        if await self._store.size(key) is None:
            return Response(status_code=404)
        return FileResponse(
            path,
            media_type=_TYPES[PurePosixPath(name).suffix],
            headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
        )
