"""One small error hierarchy for everything below the gateway.

Each class says whether retrying can help (`retriable`), so a retry decision is one line:
`if exc.retriable: back off and try again`. Driver errors (asyncpg, redis, aiokafka) and
errors that crossed Ray (an actor's exception, a dead actor) are mapped onto it in
`classify()`; the gateway maps these classes onto GraphQL codes in one place. Messages of
errors made from driver errors are Nova's own: a client never reads the driver's text.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import logging
import re
import sys
from typing import Any, ClassVar

log = logging.getLogger(__name__)


class NovaError(Exception):
    """Base of Nova's errors. Messages name the likely cause."""

    retriable: ClassVar[bool] = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray pickles an actor's or replica's exception to hand it to the caller. The
        # default (`type(self)(*self.args)`) fails for every subclass whose constructor
        # takes other arguments than its message (`Unavailable(part, detail)`), and the
        # caller then gets an opaque `UnserializableException`: rebuild the same args and
        # attributes without calling the constructor.
        return _rebuild, (type(self), self.args, dict(vars(self)))


def _rebuild(cls: type[NovaError], args: tuple[Any, ...], state: dict[str, Any]) -> NovaError:
    error = cls.__new__(cls)
    error.args = args
    vars(error).update(state)
    return error


class Unavailable(NovaError):
    """A dependency cannot be reached or did not answer in time; retry with backoff."""

    retriable = True

    def __init__(self, part: str, detail: str) -> None:
        super().__init__(f"{part} unavailable: {detail}")
        self.part = part
        self.detail = detail


class Conflict(NovaError):
    """A concurrent write won (serialization failure, deadlock); the whole unit can be retried."""

    retriable = True


class AlreadyExists(NovaError):
    """A uniqueness rule was violated; `constraint` names the unique index when the
    database told (for the caller to say which value is taken)."""

    def __init__(self, message: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


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
    """Map a driver exception onto the hierarchy (asyncpg, redis, aiokafka, OS errors), and
    an exception that crossed Ray onto what caused it."""
    crossed = _classify_ray(exc, part)
    if crossed is not None:
        return crossed
    if isinstance(exc, NovaError):
        return exc
    error = _classify_local(exc, part)
    if isinstance(error, Unavailable):
        UNAVAILABLE_SEEN[error.part] += 1
    return error


# Driver and OS errors this process mapped onto `Unavailable`, by part (`postgresql`,
# `redis`, `kafka`): `storage.stalls` exports them as `nova_dependency_unavailable_total`.
# Counted once, where the driver's error is first classified, never again as it travels.
UNAVAILABLE_SEEN: collections.Counter[str] = collections.Counter()


def _classify_local(exc: BaseException, part: str) -> NovaError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Unavailable(part, "timed out")
    if isinstance(exc, OSError | ConnectionError):
        return Unavailable(part, f"{type(exc).__name__}: {exc}")
    return _classify_driver(exc, part)


# -- errors that crossed Ray ----------------------------------------------------------------

# Ray's failures of the call itself rather than of the code called: the actor died, is
# restarting or was unreachable, its worker or node went away, the result was lost. Asking
# again (once Ray has restarted the actor) can succeed.
_RAY_OUTAGES = (
    "RayActorError",  # ActorDiedError, ActorUnavailableError
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ObjectLostError",  # and its subclasses (owner died, reconstruction failed, ...)
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "OutOfDiskError",
    "PendingCallsLimitExceeded",
    "RaySystemError",
    "ActorPlacementGroupRemoved",
    "GetTimeoutError",
)
# The last line of a formatted exception: `module.Class: message` (or `Class(Cause): ...`
# for a RayTaskError).
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?:\(([A-Za-z_][\w.]*)\))?(?::\s?(.*))?$")


def _classify_ray(exc: BaseException, part: str) -> NovaError | None:
    """None unless `exc` is one of Ray's errors. An actor's exception (`RayTaskError`)
    is classified by its cause, whatever class Ray dressed it in; an exception the caller
    could not unpickle by what its trace says it was; a dead or unreachable actor is an
    outage of the call."""
    ray_errors = sys.modules.get("ray.exceptions")
    if ray_errors is None or not isinstance(exc, ray_errors.RayError):
        return None  # Ray not loaded in this process: nothing here came through it
    if isinstance(exc, ray_errors.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            return classify(cause, part)
    if isinstance(exc, ray_errors.UnserializableException):
        return _classify_trace(str(exc), part)
    outages = tuple(
        cls for name in _RAY_OUTAGES if isinstance(cls := getattr(ray_errors, name, None), type)
    )
    if isinstance(exc, outages):
        return Unavailable("ray", f"{type(exc).__name__}: {_first_line(exc)}")
    return StorageError(f"ray: {type(exc).__name__}: {_first_line(exc)}")


def _classify_trace(trace: str, part: str) -> NovaError:
    """An exception known only by its formatted trace (Ray could not unpickle it): find the
    class its last line names among those this process has loaded, and classify an
    instance of it made without its constructor; unknown classes are not retriable."""
    lines = [line for line in trace.strip().splitlines() if line and not line[0].isspace()]
    match = _EXCEPTION_LINE.match(lines[-1]) if lines else None
    if match is None:
        return StorageError(f"an error that could not be unpickled: {trace[-300:]}")
    outer, inner, message = match.group(1), match.group(2), match.group(3) or ""
    cls = _loaded_class(inner or outer)
    if cls is None or cls is BaseException or not issubclass(cls, BaseException):
        return StorageError(f"an error that could not be unpickled: {lines[-1][:300]}")
    stand_in = cls.__new__(cls)
    stand_in.args = (message,)
    if isinstance(stand_in, Unavailable):
        stand_in.part, _, stand_in.detail = message.partition(" unavailable: ")
    return classify(stand_in, part)


def _loaded_class(dotted: str) -> type | None:
    module, _, name = dotted.rpartition(".")
    found = getattr(sys.modules.get(module) if module else builtins, name, None)
    return found if isinstance(found, type) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


# -- drivers --------------------------------------------------------------------------------


def _classify_driver(exc: BaseException, part: str) -> NovaError:
    # Imported lazily so that `storage.errors` stays importable without the drivers.
    import asyncpg
    import redis.exceptions as redis_errors
    from aiokafka import errors as kafka_errors

    if isinstance(exc, asyncpg.exceptions.UniqueViolationError):
        constraint = getattr(exc, "constraint_name", None)
        return AlreadyExists("that already exists", constraint=constraint)
    if isinstance(
        exc,
        asyncpg.exceptions.SerializationError | asyncpg.exceptions.DeadlockDetectedError,
    ):
        return Conflict(str(exc))
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        # asyncpg could not encode an argument: a lone surrogate in a text is the caller's;
        # any other mismatch is a bug in the query's caller.
        if isinstance(exc.__cause__, UnicodeError):
            return InvalidInput("text must be valid Unicode (it holds a lone surrogate)")
        return StorageError(f"{type(exc).__name__}: {exc}")
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
        return _invalid_data(exc)
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return Unavailable("redis", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, redis_errors.OutOfMemoryError):
        # `maxmemory` reached (the policy is noeviction): writes fail until there is room.
        return Unavailable("redis", "out of memory (maxmemory reached)")
    if isinstance(exc, kafka_errors.KafkaError):
        if getattr(exc, "retriable", False) or isinstance(
            exc, kafka_errors.KafkaConnectionError | kafka_errors.KafkaTimeoutError
        ):
            return Unavailable("kafka", f"{type(exc).__name__}: {exc}")
        return StorageError(f"kafka: {type(exc).__name__}: {exc}")
    return StorageError(f"{type(exc).__name__}: {exc}")


def _invalid_data(exc: BaseException) -> InvalidInput:
    """A value PostgreSQL refused, in Nova's words (the driver's text stays in the log)."""
    import asyncpg

    errors = asyncpg.exceptions
    log.debug("refused by PostgreSQL: %s: %s", type(exc).__name__, exc)
    if isinstance(exc, errors.CharacterNotInRepertoireError | errors.UntranslatableCharacterError):
        return InvalidInput("text must not contain NUL characters (U+0000)")
    if isinstance(exc, errors.StringDataRightTruncationError):
        return InvalidInput("a text is longer than Nova stores")
    if isinstance(exc, errors.NumericValueOutOfRangeError | errors.DatetimeFieldOverflowError):
        return InvalidInput("a number or date is out of range")
    return InvalidInput("a value is malformed or out of range")
