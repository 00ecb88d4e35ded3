"""One small error hierarchy for everything below the gateway.

Each class says whether retrying can help (`retriable`), so a retry decision is one line:
`if exc.retriable: back off and try again`. Driver errors (asyncpg, redis, aiokafka) are
mapped onto it in `classify()`; the gateway maps these classes onto GraphQL codes in one place.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar


class NovaError(Exception):
    """Base of Nova's errors. Messages name the likely cause."""

    retriable: ClassVar[bool] = False


class Unavailable(NovaError):
    """A dependency cannot be reached or did not answer in time; retry with backoff."""

    retriable = True

    def __init__(self, part: str, detail: str) -> None:
        super().__init__(f"{part} unavailable: {detail}")
        self.part = part
        self.detail = detail

    def __reduce__(self) -> tuple[type[Unavailable], tuple[str, str]]:
        # Ray pickles an actor's or replica's exception to hand it to the caller; the
        # default (`type(self)(*self.args)`) would call this with one argument.
        return type(self), (self.part, self.detail)


class Conflict(NovaError):
    """A concurrent write won (serialization failure, deadlock); the whole unit can be retried."""

    retriable = True


class AlreadyExists(NovaError):
    """A uniqueness rule was violated."""


class NotFound(NovaError):
    """The thing asked for does not exist."""


class InvalidInput(NovaError):
    """The caller sent something Nova refuses; retrying the same input cannot help."""


class PoisonEvent(NovaError):
    """An event a consumer cannot apply, now or later, without a fix: it goes to `dlq.all`."""


class ConfigError(NovaError):
    """Configuration is missing or wrong; an operator has to fix it."""


class StorageError(NovaError):
    """An unexpected database error: a bug or a schema mismatch, not an outage."""


def classify(exc: BaseException, part: str = "postgresql") -> NovaError:
    """Map a driver exception onto the hierarchy (asyncpg, redis, aiokafka, OS errors)."""
    if isinstance(exc, NovaError):
        return exc
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Unavailable(part, "timed out")
    if isinstance(exc, OSError | ConnectionError):
        return Unavailable(part, f"{type(exc).__name__}: {exc}")
    return _classify_driver(exc, part)


def _classify_driver(exc: BaseException, part: str) -> NovaError:
    # Imported lazily so that `storage.errors` stays importable without the drivers.
    import asyncpg
    import redis.exceptions as redis_errors
    from aiokafka import errors as kafka_errors

    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        return AlreadyExists(str(exc))
    if isinstance(
        exc,
        asyncpg.exceptions.SerializationError | asyncpg.exceptions.DeadlockDetectedError,
    ):
        return Conflict(str(exc))
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return Unavailable(part, f"statement timed out: {exc}")
    if isinstance(
        exc,
        asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.TooManyConnectionsError
        | asyncpg.exceptions.AdminShutdownError,
    ):
        return Unavailable(part, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.exceptions.DataError):
        return InvalidInput(str(exc))
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return Unavailable("redis", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, kafka_errors.KafkaError):
        if getattr(exc, "retriable", False) or isinstance(
            exc, kafka_errors.KafkaConnectionError | kafka_errors.KafkaTimeoutError
        ):
            return Unavailable("kafka", f"{type(exc).__name__}: {exc}")
        return StorageError(f"kafka: {type(exc).__name__}: {exc}")
    return StorageError(f"{type(exc).__name__}: {exc}")
