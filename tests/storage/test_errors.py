"""Nova's errors survive pickling: Ray hands an actor's or replica's exception to its
caller that way, and a caller must get the same error (code, retriability), not an
opaque failure to unpickle it. Whatever crossed Ray is classified by its cause, and
values PostgreSQL refuses reach clients as coded errors in Nova's words."""

from __future__ import annotations

import json
import pickle
import traceback
import uuid

import httpx
import pytest
from ray import exceptions as ray_errors
from redis import exceptions as redis_errors

from actors.chat_shard import Blocked, NotAMember
from actors.read_channel import RemoteError
from deployments.settings import Settings
from gateway.errors import RateLimited
from storage import errors
from storage.db import Database
from tests.support.graphql import Reply
from tests.support.social import CREATE_POST, call, create_post, make_members


@pytest.mark.parametrize(
    "error",
    [
        errors.Unavailable("redis", "timed out"),
        errors.Conflict("deadlock detected"),
        errors.AlreadyExists("username is taken", constraint="users_username_key"),
        errors.NotFound("no such post"),
        errors.InvalidInput("text must not be empty"),
        errors.PoisonEvent("payload is not an object"),
        errors.ConfigError("NOVA_SECRET_KEY is required"),
        errors.StorageError("unexpected"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_every_error_round_trips_through_pickle(error: errors.NovaError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.retriable == error.retriable


def test_a_driver_outage_is_counted_once_by_its_part() -> None:
    """`nova_dependency_unavailable_total` (exported by `storage.stalls`) counts outages
    where a driver's error is first classified, not again as the error travels on."""
    before = errors.UNAVAILABLE_SEEN.copy()
    mapped = errors.classify(redis_errors.ConnectionError("refused"), "redis")
    assert errors.classify(mapped) is mapped
    errors.classify(TimeoutError())  # PostgreSQL's, unless the caller names another part
    errors.classify(redis_errors.ResponseError("WRONGTYPE"))  # a bug, not an outage
    assert errors.UNAVAILABLE_SEEN - before == {"redis": 1, "postgresql": 1}


def test_an_unavailable_part_keeps_its_part_and_detail() -> None:
    copy = pickle.loads(pickle.dumps(errors.Unavailable("kafka", "broker down")))
    assert (copy.part, copy.detail) == ("kafka", "broker down")


@pytest.mark.parametrize(
    "error",
    [
        RemoteError("handler failed", retriable=True),
        RateLimited("rate limit exceeded (login)", 2.5),
        Blocked("blocked"),
        NotAMember("not a member"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_defined_above_storage_round_trip_too(error: errors.NovaError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.retriable == error.retriable
    assert vars(copy) == vars(error)


# -- errors that crossed Ray: classified by their cause -------------------------------------


def _raised_in_an_actor(cause: BaseException) -> BaseException:
    """What a caller awaiting an actor method gets when the method raised `cause`."""
    try:
        raise cause
    except BaseException as exc:
        error = ray_errors.RayTaskError(  # type: ignore[no-untyped-call]
            "TimelineShardActor.push", traceback.format_exc(), exc
        )
    # Ray pickles the error in the actor's process; the caller raises it as an instance
    # of both RayTaskError and the cause's class.
    copy: ray_errors.RayTaskError = pickle.loads(pickle.dumps(error))
    raised: BaseException = copy.as_instanceof_cause()  # type: ignore[no-untyped-call]
    return raised


@pytest.mark.parametrize(
    "cause",
    [
        errors.Unavailable("redis", "Connection refused"),
        redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:21379."),
        redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
        redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=lambda cause: type(cause).__name__,
)
def test_an_outage_inside_an_actor_is_retriable_for_its_caller(cause: BaseException) -> None:
    error = errors.classify(_raised_in_an_actor(cause))
    assert isinstance(error, errors.Unavailable), error
    assert error.retriable


def test_a_bug_inside_an_actor_stays_a_bug_for_its_caller() -> None:
    error = errors.classify(_raised_in_an_actor(KeyError("no such user")))
    assert not error.retriable
    assert isinstance(error, errors.StorageError)
    poison = errors.classify(_raised_in_an_actor(errors.PoisonEvent("bad")))
    assert isinstance(poison, errors.PoisonEvent)


def test_an_actor_that_died_or_restarts_is_unavailable() -> None:
    for error in (
        ray_errors.ActorDiedError(),
        ray_errors.ActorUnavailableError("restarting", b"\x00" * 16),
        ray_errors.WorkerCrashedError(),
        ray_errors.GetTimeoutError("timed out"),
    ):
        classified = errors.classify(error)
        assert isinstance(classified, errors.Unavailable), (error, classified)


def test_an_exception_that_could_not_be_unpickled_is_classified_by_what_it_was() -> None:
    def unpickled(cause: BaseException) -> BaseException:
        try:
            raise cause
        except BaseException as exc:
            trace = "".join(traceback.format_exception(exc))
        return ray_errors.UnserializableException(trace)

    outage = errors.classify(unpickled(errors.Unavailable("redis", "Connection refused")))
    assert isinstance(outage, errors.Unavailable), outage
    loading = errors.classify(unpickled(redis_errors.BusyLoadingError("loading the dataset")))
    assert isinstance(loading, errors.Unavailable), loading
    bug = errors.classify(unpickled(ValueError("bad literal")))
    assert not bug.retriable


# -- database errors reach clients in Nova's words ------------------------------------------

DRIVER_WORDS = ("0x00", "UTF8", "byte sequence", "escape sequence", "asyncpg")


def _in_novas_words(message: str) -> None:
    for words in DRIVER_WORDS:
        assert words not in message, message


@pytest.mark.stack
async def test_text_postgresql_cannot_store_is_invalid_input_in_novas_words(db: Database) -> None:
    for sql, value in (
        ("SELECT $1::text", "nul \x00 inside"),
        ("SELECT $1::text::jsonb", '{"a": "\\u0000"}'),
        ("SELECT $1::jsonb", {"a": "nul \x00 inside"}),
        ("SELECT $1::text", "lone \ud800 surrogate"),
    ):
        with pytest.raises(errors.InvalidInput) as caught:
            await db.fetchval(sql, value)
        _in_novas_words(str(caught.value))


@pytest.mark.stack
async def test_a_taken_value_names_its_constraint_not_the_drivers_text(db: Database) -> None:
    taken = uuid.uuid4()
    await db.fetchval("INSERT INTO test_fixes (event_id) VALUES ($1)", taken)
    with pytest.raises(errors.AlreadyExists) as caught:
        await db.fetchval("INSERT INTO test_fixes (event_id) VALUES ($1)", taken)
    assert caught.value.constraint == "test_fixes_pkey"
    assert "duplicate key" not in str(caught.value)
    _in_novas_words(str(caught.value))


TRACK = "mutation($e: [TrackedEventInput!]!) { trackEvents(events: $e) }"


@pytest.mark.stack
async def test_a_client_sending_a_nul_gets_bad_user_input_in_novas_words(
    http_url: str, db: Database, deployed: Settings
) -> None:
    (member,) = await make_members(db, deployed, 1, prefix="nul")
    for text in ("nul \x00 inside", "lone \ud800 surrogate"):
        # As JSON escapes (`\\u0000`, `\\ud800`), the way any client may send them.
        body = json.dumps({"query": CREATE_POST, "variables": {"text": text}})
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{http_url}/graphql",
                content=body.encode("ascii"),
                headers={
                    "content-type": "application/json",
                    "authorization": f"Bearer {member.token}",
                },
            )
        reply = Reply(response.status_code, response.json(), response.headers)
        assert reply.codes == ["BAD_USER_INPUT"], reply.body
        _in_novas_words(reply.errors[0]["message"])
    created = await create_post(http_url, member, "a post to track")
    reply = await call(
        http_url,
        member,
        TRACK,
        e=[{"kind": "CLICK", "postId": created["id"], "modelVersion": "v\x001"}],
    )
    assert reply.codes == ["BAD_USER_INPUT"], reply.body
    _in_novas_words(reply.errors[0]["message"])
