"""GraphQL errors with `extensions.code`, and the one mapping from Nova's errors onto them."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from storage.errors import AlreadyExists, InvalidInput, NotFound, NovaError, Unavailable
from storage.tracing import current_traceparent, trace_id_of

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
UNAVAILABLE = "UNAVAILABLE"
INTERNAL = "INTERNAL_SERVER_ERROR"

_CODES: tuple[tuple[type[NovaError], str], ...] = (
    (InvalidInput, BAD_USER_INPUT),
    (AlreadyExists, BAD_USER_INPUT),
    (NotFound, NOT_FOUND),
    (Unavailable, UNAVAILABLE),
)


def user_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def code_for(error: BaseException) -> str | None:
    """The client-facing code of an exception, or None for one that must be masked."""
    if isinstance(error, GraphQLError) and error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return None


def should_mask(error: GraphQLError) -> bool:
    """Mask anything without a known code, after logging it with the trace id."""
    original = error.original_error or error
    if error.original_error is None and not error.extensions:
        return False  # a parse or validation error: safe and useful to the client
    if code_for(original) is not None:
        if error.original_error is not None and not error.extensions:
            error.extensions = {"code": code_for(original)}
        return False
    log.error(
        "unexpected error (trace %s)",
        trace_id_of(current_traceparent()),
        exc_info=(type(original), original, original.__traceback__),
    )
    return True
