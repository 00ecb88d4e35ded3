"""Data export archives over plain HTTP.

`GET /exports/<id>/<signature>/<expires>/nova-export.zip`: the archive of a READY export
through the link `gateway.services.exports.DataExports.url` signed (`storage.export_links`),
as an attachment, never cached by anyone (`private, no-store`). An altered or expired link
is 403; an export that is not (or no longer) READY is 404.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.services.exports import DataExports
from storage.export_links import ARCHIVE

_HEADERS = {
    "Cache-Control": "private, no-store",
    "Content-Disposition": f'attachment; filename="{ARCHIVE}"',
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


class ExportRoutes:
    def __init__(self, exports: DataExports) -> None:
        self._exports = exports

    def routes(self) -> list[BaseRoute]:
        return [
            Route(
                "/exports/{export_id}/{signature}/{expires}/" + ARCHIVE,
                self.download,
                methods=["GET", "HEAD"],
            )
        ]

    async def download(self, request: Request) -> Response:
        try:
            export_id = uuid.UUID(request.path_params["export_id"])
            expires = int(request.path_params["expires"])
        except ValueError:
            return _error(404, "NOT_FOUND", "no such data export")
        if not self._exports.link_valid(export_id, request.path_params["signature"], expires):
            return _error(403, "FORBIDDEN", "this download link is not valid (or has expired)")
        opened = await self._exports.open_archive(export_id)
        if opened is None:
            return _error(404, "NOT_FOUND", "this data export is no longer available")
        chunks, total = opened
        headers = {**_HEADERS, "Content-Length": str(total)}
        if request.method == "HEAD":
            await chunks.aclose()
            return Response(headers=headers, media_type="application/zip")
        return StreamingResponse(chunks, headers=headers, media_type="application/zip")
