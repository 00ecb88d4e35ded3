"""Nova's errors survive pickling: Ray hands an actor's or replica's exception to its
caller that way, and a caller must get the same error (code, retriability), not an
opaque failure to unpickle it."""

from __future__ import annotations

import pickle

import pytest

from storage import errors


@pytest.mark.parametrize(
    "error",
    [
        errors.Unavailable("redis", "timed out"),
        errors.Conflict("deadlock detected"),
        errors.AlreadyExists("username is taken"),
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


def test_an_unavailable_part_keeps_its_part_and_detail() -> None:
    copy = pickle.loads(pickle.dumps(errors.Unavailable("kafka", "broker down")))
    assert (copy.part, copy.detail) == ("kafka", "broker down")
