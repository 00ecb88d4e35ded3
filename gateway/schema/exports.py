"""GraphQL operations of data exports: `exportMyData` and `dataExport`
(`gateway.services.exports`)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from gateway.schema.types import NovaInfo, parse_id
from gateway.services.exports import BUDGET
from storage.repositories.exports import ExportRecord


@strawberry.enum(description="Where a data export is.")
class DataExportStatus(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


@strawberry.type(description="An archive of your data: its progress, then its download link.")
class DataExport:
    id: strawberry.ID
    status: DataExportStatus
    progress: float = strawberry.field(description="From 0 to 1, as kinds of data complete.")
    created_at: datetime
    ready_at: datetime | None
    expires_at: datetime | None = strawberry.field(
        description="When the archive is deleted and the link stops working (7 days after "
        "it is ready)."
    )
    url: str | None = strawberry.field(
        description="Where the archive (a zip) downloads, while READY: a signed link that "
        "works without signing in, until `expiresAt`. Keep it private."
    )
    error: str | None = strawberry.field(description="Why it FAILED.")
    size_bytes: float | None = strawberry.field(description="The archive's size, once READY.")

    @classmethod
    def of(cls, record: ExportRecord, url: str | None) -> DataExport:
        return cls(
            id=strawberry.ID(str(record.id)),
            status=DataExportStatus(record.status),
            progress=round(record.progress, 4),
            created_at=record.created_at,
            ready_at=record.ready_at,
            expires_at=record.expires_at,
            url=url,
            error=record.error,
            size_bytes=record.size_bytes,
        )


def _export(info: NovaInfo, record: ExportRecord) -> DataExport:
    return DataExport.of(record, info.context.runtime.exports.url(record))


@strawberry.type
class ExportQuery:
    @strawberry.field(
        description="One of your data exports, or without `id` your latest (null if none); "
        "someone else's is NOT_FOUND."
    )
    async def data_export(
        self, info: NovaInfo, id: strawberry.ID | None = None
    ) -> DataExport | None:
        viewer = info.context.require_user().user_id
        export_id = parse_id(id) if id is not None else None
        record = await info.context.runtime.exports.get(viewer, export_id)
        return _export(info, record) if record is not None else None


@strawberry.type
class ExportMutation:
    @strawberry.mutation(
        description="Start an archive of your data (JSON per kind, your media, a README). "
        "One at a time: while one is queued or running, or one was ready less than a day "
        "ago, that one is answered. Follow it with `dataExport`; an email says when it is "
        "ready."
    )
    async def export_my_data(self, info: NovaInfo) -> DataExport:
        viewer = info.context.require_user().user_id
        exports = info.context.runtime.exports
        record = await exports.reusable(viewer)
        if record is None:
            await info.context.runtime.charge(BUDGET, str(viewer))
            record = await exports.request(viewer)
        return _export(info, record)
