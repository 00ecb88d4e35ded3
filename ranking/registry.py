"""The model registry: versions in PostgreSQL, artifacts in `NOVA_MODEL_STORE`, routes.

Registering reads the artifact, loads and smoke-tests it (`ranking.models`), checks its
feature schema against the feature store's (`ranking.schema`), and only then copies it into
the store under its checksum and records the version. A refused model leaves nothing
behind, and whatever serves keeps serving.

Routes (`model_routes`) split a model name's traffic across versions; every change is
kept in `model_route_history`, so a rollback restores the split before the last change.
Gateways poll the route revision (`RouteTable`), so a change serves within a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from ranking.models import ModelError, Scorer, format_of, load_model
from ranking.routing import InvalidSplit, check_split, choose
from ranking.schema import check_schema, fingerprint
from storage.db import Database
from storage.errors import InvalidInput, NotFound

SUFFIX = {"numpy": ".npz", "onnx": ".onnx"}


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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ModelVersion:
        return cls(
            name=row["name"],
            version=row["version"],
            format=row["format"],
            checksum=row["checksum"],
            artifact=row["artifact"],
            size_bytes=row["size_bytes"],
            features=tuple(row["features"]),
            schema_fingerprint=row["schema_fingerprint"],
            created_by=row["created_by"],
            notes=row["notes"],
            metrics=dict(row["metrics"]),
            created_at=row["created_at"],
        )

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


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate(data: bytes, fmt: str) -> Scorer:
    """Load the artifact and check its schema; raise `InvalidInput` saying why not."""
    try:
        model = load_model(data, fmt)
        check_schema(model.features)
    except ValueError as exc:  # ModelError, SchemaMismatch
        raise InvalidInput(f"model refused: {exc}") from exc
    return model


def _store_artifact(store: Path, name: str, version: str, data: bytes, fmt: str) -> str:
    """Write the artifact atomically; return its path relative to the store."""
    relative = Path(name) / f"{version}-{checksum(data)[:16]}{SUFFIX[fmt]}"
    target = store / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + f".{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return str(relative)


async def register(
    db: Database,
    store: Path,
    path: Path,
    *,
    name: str,
    version: str,
    created_by: str,
    notes: str = "",
    metrics: dict[str, Any] | None = None,
) -> ModelVersion:
    try:
        fmt = format_of(path)
        data = await asyncio.to_thread(path.read_bytes)
    except (OSError, ModelError) as exc:
        raise InvalidInput(f"model refused: {exc}") from exc
    model = validate(data, fmt)
    relative = await asyncio.to_thread(_store_artifact, store, name, version, data, fmt)
    try:
        async with db.transaction() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO model_versions (name, version, format, checksum, artifact,
                    size_bytes, features, schema_fingerprint, created_by, notes, metrics)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                RETURNING *
                """,
                name,
                version,
                fmt,
                checksum(data),
                relative,
                len(data),
                list(model.features),
                fingerprint(list(model.features)),
                created_by,
                notes,
                metrics or {},
            )
    except asyncpg.UniqueViolationError:
        raise InvalidInput(f"{name} {version} is already registered; pick a new version") from None
    except asyncpg.CheckViolationError as exc:
        raise InvalidInput(
            "a model name is lower-case letters, digits, '.', '_' or '-' (up to 64); "
            "a version is letters, digits, '.', '_' or '-' (up to 64)"
        ) from exc
    return ModelVersion.from_row(row)


async def versions(db: Database, name: str | None = None) -> list[ModelVersion]:
    rows = await db.fetch(
        "SELECT * FROM model_versions WHERE $1::text IS NULL OR name = $1 "
        "ORDER BY name, created_at",
        name,
    )
    return [ModelVersion.from_row(row) for row in rows]


async def get_version(db: Database, name: str, version: str) -> ModelVersion:
    row = await db.fetchrow(
        "SELECT * FROM model_versions WHERE name = $1 AND version = $2", name, version
    )
    if row is None:
        raise NotFound(f"no model {name} version {version}")
    return ModelVersion.from_row(row)


def read_artifact(store: Path, model: ModelVersion) -> bytes:
    """The artifact's bytes, verified against the recorded checksum."""
    try:
        data = (store / model.artifact).read_bytes()
    except OSError as exc:
        raise ModelError(f"{model.model_id}: artifact unreadable: {exc}") from exc
    if checksum(data) != model.checksum:
        raise ModelError(f"{model.model_id}: artifact checksum differs from the registry's")
    return data


async def get_route(db: Database, name: str) -> Route | None:
    row = await db.fetchrow("SELECT * FROM model_routes WHERE name = $1", name)
    return None if row is None else _route(row)


def _route(row: asyncpg.Record) -> Route:
    return Route(
        name=row["name"],
        arms=dict(row["arms"]),
        revision=row["revision"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def _set_route(
    conn: asyncpg.Connection, name: str, arms: dict[str, float], by: str, reason: str
) -> Route:
    row = await conn.fetchrow(
        """
        INSERT INTO model_routes (name, arms, revision, updated_by)
        VALUES ($1, $2, 1, $3)
        ON CONFLICT (name) DO UPDATE SET arms = EXCLUDED.arms,
            revision = model_routes.revision + 1, updated_by = EXCLUDED.updated_by,
            updated_at = clock_timestamp()
        RETURNING *
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
    return _route(row)


async def route(db: Database, name: str, arms: dict[str, float], *, by: str, store: Path) -> Route:
    """Send `arms` (version → percent) of `name`'s traffic.

    Every version must be registered and its stored artifact must still load (checksum
    and smoke test): a version that could not serve is refused, and the split in force
    stays in force.
    """
    try:
        check_split(arms)
    except InvalidSplit as exc:
        raise InvalidInput(str(exc)) from exc
    async with db.transaction() as conn:
        rows = await conn.fetch(
            "SELECT * FROM model_versions WHERE name = $1 AND version = ANY($2)",
            name,
            list(arms),
        )
        known = {row["version"]: ModelVersion.from_row(row) for row in rows}
        missing = [v for v in arms if v not in known]
        if missing:
            raise InvalidInput(f"{name} has no registered version {', '.join(missing)}")
        for version, percent in arms.items():
            if percent > 0:
                await asyncio.to_thread(_check_servable, store, known[version])
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", name)
        return await _set_route(conn, name, arms, by, "route")


def _check_servable(store: Path, model: ModelVersion) -> None:
    try:
        load_model(read_artifact(store, model), model.format)
    except ModelError as exc:
        raise InvalidInput(f"{model.model_id} cannot serve: {exc}") from exc


async def rollback(db: Database, name: str, *, by: str) -> Route:
    """Restore the split in force before the latest change."""
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", name)
        current = await conn.fetchrow("SELECT arms FROM model_routes WHERE name = $1", name)
        if current is None:
            raise NotFound(f"{name} has no route to roll back")
        # The newest earlier split that differs from the current one.
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
            raise InvalidInput(f"{name} has no earlier split to roll back to")
        restored = dict(previous)
        return await _set_route(conn, name, restored, by, "rollback")


class RouteTable:
    """A gateway replica's copy of the routes, re-read when older than `refresh_s`.

    Re-reading is one indexed query of a tiny table, so a split or a rollback reaches
    every replica within `refresh_s` of its commit, with no redeploy and no pub/sub to lose.
    """

    def __init__(self, db: Database, *, refresh_s: float) -> None:
        self._db = db
        self._refresh_s = refresh_s
        self._routes: dict[str, Route] = {}
        self._loaded_at = -1e9

    async def routes(self) -> dict[str, Route]:
        if time.monotonic() - self._loaded_at >= self._refresh_s:
            rows = await self._db.fetch("SELECT * FROM model_routes")
            self._routes = {row["name"]: _route(row) for row in rows}
            self._loaded_at = time.monotonic()
        return self._routes

    async def version_for(self, name: str, user_id: str) -> str | None:
        """The version serving `user_id` under `name`, or None if `name` has no route."""
        found = (await self.routes()).get(name)
        if found is None:
            return None
        return choose(found.arms, name, user_id)
