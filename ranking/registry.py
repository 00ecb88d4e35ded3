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
from pathlib import Path
from typing import Any

from ranking.models import ModelError, Scorer, format_of, load_model
from ranking.routing import InvalidSplit, check_split, choose
from ranking.schema import check_schema, fingerprint
from storage.db import Database
from storage.errors import AlreadyExists, InvalidInput, NotFound
from storage.repositories.models import ModelStore, ModelVersion, RollbackRefused, Route

SUFFIX = {"numpy": ".npz", "onnx": ".onnx"}


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
        return await ModelStore(db).add_version(
            name=name,
            version=version,
            format=fmt,
            checksum=checksum(data),
            artifact=relative,
            size_bytes=len(data),
            features=list(model.features),
            schema_fingerprint=fingerprint(list(model.features)),
            created_by=created_by,
            notes=notes,
            metrics=metrics or {},
        )
    except AlreadyExists:
        raise InvalidInput(f"{name} {version} is already registered; pick a new version") from None
    except InvalidInput as exc:  # the table's checks on the labels
        raise InvalidInput(
            "a model name is lower-case letters, digits, '.', '_' or '-' (up to 64); "
            "a version is letters, digits, '.', '_' or '-' (up to 64)"
        ) from exc


async def versions(db: Database, name: str | None = None) -> list[ModelVersion]:
    return await ModelStore(db).versions(name)


async def get_version(db: Database, name: str, version: str) -> ModelVersion:
    found = await ModelStore(db).version(name, version)
    if found is None:
        raise NotFound(f"no model {name} version {version}")
    return found


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
    return await ModelStore(db).route(name)


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

    async def check(known: dict[str, ModelVersion]) -> None:
        # Runs inside the route's transaction, before its lock and write.
        missing = [v for v in arms if v not in known]
        if missing:
            raise InvalidInput(f"{name} has no registered version {', '.join(missing)}")
        for version, percent in arms.items():
            if percent > 0:
                await asyncio.to_thread(_check_servable, store, known[version])

    return await ModelStore(db).set_route(name, arms, by=by, check=check)


def _check_servable(store: Path, model: ModelVersion) -> None:
    try:
        load_model(read_artifact(store, model), model.format)
    except ModelError as exc:
        raise InvalidInput(f"{model.model_id} cannot serve: {exc}") from exc


async def rollback(db: Database, name: str, *, by: str) -> Route:
    """Restore the split in force before the latest change."""
    restored = await ModelStore(db).roll_back_route(name, by=by)
    if restored is RollbackRefused.NO_ROUTE:
        raise NotFound(f"{name} has no route to roll back")
    if restored is RollbackRefused.NO_EARLIER_SPLIT:
        raise InvalidInput(f"{name} has no earlier split to roll back to")
    return restored


class RouteTable:
    """A gateway replica's copy of the routes, re-read when older than `refresh_s`.

    Re-reading is one indexed query of a tiny table, so a split or a rollback reaches
    every replica within `refresh_s` of its commit, with no redeploy and no pub/sub to lose.
    """

    def __init__(self, db: Database, *, refresh_s: float) -> None:
        self._store = ModelStore(db)
        self._refresh_s = refresh_s
        self._routes: dict[str, Route] = {}
        self._loaded_at = -1e9

    async def routes(self) -> dict[str, Route]:
        if time.monotonic() - self._loaded_at >= self._refresh_s:
            self._routes = {found.name: found for found in await self._store.routes()}
            self._loaded_at = time.monotonic()
        return self._routes

    async def version_for(self, name: str, user_id: str) -> str | None:
        """The version serving `user_id` under `name`, or None if `name` has no route."""
        found = (await self.routes()).get(name)
        if found is None:
            return None
        return choose(found.arms, name, user_id)
