"""The model registry's rows: versions (`model_versions`), routes (`model_routes`) and every
route change (`model_route_history`).

Validating an artifact, storing it on disk and choosing a split are `ranking.registry`'s;
this module records what it decided. Route changes of one model name are serialized by a
transaction-scoped advisory lock, so the history's order is the order of the changes.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storage.db import Database
from storage.errors import AlreadyExists, InvalidInput
from storage.rows import columns, from_row, from_rows


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    format: str
    checksum: str
    artifact: str
    size_bytes: int
    features: tuple[str, ...]
    schema_fingerprint: str
    created_by: str
    notes: str
    metrics: dict[str, Any]
    created_at: datetime

    @property
    def model_id(self) -> str:
        """The id the Ranker multiplexes on."""
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "checksum": self.checksum,
            "size_bytes": self.size_bytes,
            "schema_fingerprint": self.schema_fingerprint,
            "created_by": self.created_by,
            "notes": self.notes,
            "metrics": self.metrics,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Route:
    name: str
    arms: dict[str, float]
    revision: int
    updated_by: str
    updated_at: datetime


class RollbackRefused(enum.Enum):
    """Why a rollback changed nothing."""

    NO_ROUTE = "no route"
    NO_EARLIER_SPLIT = "no earlier split"


_VERSION_COLUMNS = columns(ModelVersion)
_ROUTE_COLUMNS = columns(Route)
# One lock per model name (key space 7), held by a route change until it commits.
_LOCK_ROUTE = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))"


async def _set_route(
    conn: asyncpg.Connection, name: str, arms: Mapping[str, float], by: str, reason: str
) -> Route:
    """Upsert the route (a new revision) and append the change to its history."""
    row = await conn.fetchrow(
        f"""
        INSERT INTO model_routes (name, arms, revision, updated_by)
        VALUES ($1, $2, 1, $3)
        ON CONFLICT (name) DO UPDATE SET arms = EXCLUDED.arms,
            revision = model_routes.revision + 1, updated_by = EXCLUDED.updated_by,
            updated_at = clock_timestamp()
        RETURNING {_ROUTE_COLUMNS}
        """,
        name,
        arms,
        by,
    )
    await conn.execute(
        "INSERT INTO model_route_history (name, arms, revision, changed_by, reason) "
        "VALUES ($1, $2, $3, $4, $5)",
        name,
        arms,
        row["revision"],
        by,
        reason,
    )
    return from_row(Route, row)


class ModelStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_version(
        self,
        *,
        name: str,
        version: str,
        format: str,
        checksum: str,
        artifact: str,
        size_bytes: int,
        features: Sequence[str],
        schema_fingerprint: str,
        created_by: str,
        notes: str,
        metrics: Mapping[str, Any],
    ) -> ModelVersion:
        """Record a version whose artifact is already stored.

        Raises `AlreadyExists` when `name` already has `version`, and `InvalidInput` when
        the table's checks refuse the name or the version as a label."""
        async with self._db.transaction() as conn:
            try:
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO model_versions (name, version, format, checksum, artifact,
                        size_bytes, features, schema_fingerprint, created_by, notes, metrics)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                    RETURNING {_VERSION_COLUMNS}
                    """,
                    name,
                    version,
                    format,
                    checksum,
                    artifact,
                    size_bytes,
                    list(features),
                    schema_fingerprint,
                    created_by,
                    notes,
                    dict(metrics),
                )
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyExists(f"model {name} version {version} exists") from exc
            except asyncpg.CheckViolationError as exc:
                raise InvalidInput(f"model {name} version {version}: {exc}") from exc
        return from_row(ModelVersion, row)

    async def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version of `name` (of every name when None), oldest first."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_VERSION_COLUMNS} FROM model_versions"
                " WHERE $1::text IS NULL OR name = $1 ORDER BY name, created_at",
                name,
            )
        return from_rows(ModelVersion, rows)

    async def version(self, name: str, version: str) -> ModelVersion | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2",
                name,
                version,
            )
        return None if row is None else from_row(ModelVersion, row)

    async def route(self, name: str) -> Route | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_ROUTE_COLUMNS} FROM model_routes WHERE name = $1", name
            )
        return None if row is None else from_row(Route, row)

    async def routes(self) -> list[Route]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(f"SELECT {_ROUTE_COLUMNS} FROM model_routes")
        return from_rows(Route, rows)

    async def set_route(
        self,
        name: str,
        arms: Mapping[str, float],
        *,
        by: str,
        check: Callable[[dict[str, ModelVersion]], Awaitable[None]],
    ) -> Route:
        """Route `arms` (version → percent) of `name`'s traffic, in one transaction.

        `check` sees the registered versions among `arms` before anything is written and
        raises to refuse the split (a version missing or unable to serve); the split in
        force then stays in force."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                f"SELECT {_VERSION_COLUMNS} FROM model_versions"
                " WHERE name = $1 AND version = ANY($2)",
                name,
                list(arms),
            )
            await check({model.version: model for model in from_rows(ModelVersion, rows)})
            await conn.execute(_LOCK_ROUTE, name)
            return await _set_route(conn, name, arms, by, "route")

    async def roll_back_route(self, name: str, *, by: str) -> Route | RollbackRefused:
        """Restore the newest earlier split that differs from the current one, in one
        transaction under the name's lock; nothing is written when refused."""
        async with self._db.transaction() as conn:
            await conn.execute(_LOCK_ROUTE, name)
            current = await conn.fetchrow("SELECT arms FROM model_routes WHERE name = $1", name)
            if current is None:
                return RollbackRefused.NO_ROUTE
            previous = await conn.fetchval(
                """
                SELECT arms FROM model_route_history
                WHERE name = $1 AND arms <> $2
                  AND id < (SELECT max(id) FROM model_route_history WHERE name = $1)
                ORDER BY id DESC LIMIT 1
                """,
                name,
                current["arms"],
            )
            if previous is None:
                return RollbackRefused.NO_EARLIER_SPLIT
            return await _set_route(conn, name, dict(previous), by, "rollback")
