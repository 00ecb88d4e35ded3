"""Media over plain HTTP: the PUT a signed upload URL takes, and the files processing made.

- `PUT /media/uploads/<id>?expires=…&signature=…`: the bytes of one upload
  (`gateway.services.media.Media.receive`); 204, or a JSON error with Nova's code:
  403 (a wrong signature), 410 (expired), 409 (used already), 413 (over the declared
  size), 400 (truncated), 415 (not the declared kind, or no known type).
- `GET /media/<id>/<name>`: a file of public media (a post's: `large.webp`, `thumb.jpeg`,
  `hls.m3u8`, …), with range requests (for video), `Cache-Control: public,
  max-age=31536000, immutable` (a file never changes under its name) and `nosniff`.
- `GET /media/signed/<expires>/<signature>/<id>/<name>`: a file of private media (a
  message's, a story's, an upload not yet attached) through the URL `files_url` signed,
  until it expires (403 after), cached privately until then.

Originals are never served: they may carry metadata (a photo's location) that processing
strips. Anything else is 404, private media asked for unsigned included.
"""

from __future__ import annotations

import time
import uuid
from pathlib import PurePosixPath

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.services.media import Media, UploadRefused
from storage.errors import InvalidInput
from storage.media_store import ORIGINAL, RangeNotSatisfiable, media_key, resolve_range

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
            Route(
                "/media/signed/{expires}/{signature}/{media_id}/{name}",
                self.signed_download,
                methods=["GET", "HEAD"],
            ),
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
        file = _file(request)
        if file is None or not await self._media.is_public(file[0]):
            return Response(status_code=404)
        return await self._serve(request, file, IMMUTABLE)

    async def signed_download(self, request: Request) -> Response:
        file = _file(request)
        try:
            expires = int(request.path_params["expires"])
        except ValueError:
            return Response(status_code=404)
        if file is None:
            return Response(status_code=404)
        if not self._media.signed_download_valid(
            file[0], expires, request.path_params["signature"]
        ):
            return _error(403, "FORBIDDEN", "this media URL is not valid (or has expired)")
        remaining = max(0, expires - int(time.time()))
        return await self._serve(request, file, f"private, max-age={remaining}")

    async def _serve(
        self, request: Request, file: tuple[uuid.UUID, str], cache_control: str
    ) -> Response:
        """The file, whole or the one byte range asked for, streamed from the store."""
        wanted = _byte_range(request.headers.get("range"))
        start, end = wanted or (None, None)
        try:
            opened = await self._store.open_read(media_key(*file), start, end)
        except RangeNotSatisfiable as beyond:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{beyond.total}"})
        if opened is None:
            return Response(status_code=404)
        chunks, total = opened
        first, last = resolve_range(start, end, total)
        headers = {
            "Cache-Control": cache_control,
            "X-Content-Type-Options": "nosniff",
            "Accept-Ranges": "bytes",
            "Content-Length": str(last - first + 1),
        }
        status = 200
        if wanted is not None:
            status = 206
            headers["Content-Range"] = f"bytes {first}-{last}/{total}"
        media_type = _TYPES[PurePosixPath(file[1]).suffix]
        if request.method == "HEAD":
            await chunks.aclose()
            return Response(status_code=status, headers=headers, media_type=media_type)
        return StreamingResponse(chunks, status_code=status, headers=headers, media_type=media_type)


def _byte_range(header: str | None) -> tuple[int | None, int | None] | None:
    """One byte range of a `Range` header as `open_read` takes it (`bytes=a-b`, `bytes=a-`,
    `bytes=-n`); None for none, several or one that does not parse: then the whole file
    is sent, as HTTP allows."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            return None
        if not first:
            return (-int(last), None) if last and int(last) > 0 else None
        start = int(first)
        end = int(last) if last else None
    except ValueError:
        return None
    if start < 0 or (end is not None and end < start):
        return None
    return start, end


def _file(request: Request) -> tuple[uuid.UUID, str] | None:
    """The media and file a download asks for, if it is a file Nova serves."""
    name = request.path_params["name"]
    try:
        media_id = uuid.UUID(request.path_params["media_id"])
        media_key(media_id, name)
    except (ValueError, InvalidInput):
        return None
    if name == ORIGINAL or PurePosixPath(name).suffix not in _TYPES:
        return None
    return media_id, name
