"""GraphQL errors with `extensions.code`, and the one mapping from Nova's errors onto them."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from actors.chat_shard import Blocked, NotAMember
from storage.errors import AlreadyExists, InvalidInput, NotFound, NovaError, Unavailable
from storage.tracing import current_traceparent, trace_id_of

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
UNAVAILABLE = "UNAVAILABLE"
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
INTERNAL = "INTERNAL_SERVER_ERROR"


class Unauthenticated(NovaError):
    """No valid credentials: a missing, expired, revoked or forged token, or a bad login."""


class Forbidden(NovaError):
    """Authenticated, but not allowed to do this."""


class CodedRefusal(InvalidInput):
    """Bad input with a code of its own (`UNSUPPORTED_MEDIA`, `TOO_LARGE`, …) and the HTTP
    status a plain route answers it with; over GraphQL its `code` is the error's code."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(NovaError):
    """A rate limit budget is spent; `retry_after_s` says when to try again."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


_CODES: tuple[tuple[type[NovaError], str], ...] = (
    (InvalidInput, BAD_USER_INPUT),
    (AlreadyExists, BAD_USER_INPUT),
    (NotFound, NOT_FOUND),
    (Unavailable, UNAVAILABLE),
    (Unauthenticated, UNAUTHENTICATED),
    (Forbidden, FORBIDDEN),
    (RateLimited, RATE_LIMITED),
    (NotAMember, FORBIDDEN),
    (Blocked, FORBIDDEN),
)


def retry_after_header(seconds: float) -> str:
    """`Retry-After` takes whole seconds; never advertise 0 for a refused request."""
    return str(max(1, math.ceil(seconds)))


def user_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def code_for(error: BaseException) -> str | None:
    """The client-facing code of an exception, or None for one that must be masked."""
    if isinstance(error, GraphQLError) and error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])
    if isinstance(error, CodedRefusal):
        return error.code
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return None


def log_failed_operation(
    errors: Sequence[GraphQLError], *, operation_name: str | None, operation_type: str | None
) -> None:
    """One line for an operation that failed: its type and name, and each error's code and
    field path, under the request's trace id. Never the document, the errors' messages or
    the variables: they hold what the client wrote (passwords, reset and refresh tokens),
    and graphql-core's messages quote the values they refuse. Errors nobody coded are
    logged with their traceback by `should_mask`."""
    if not errors:
        return
    described = []
    for error in errors:
        code = (error.extensions or {}).get("code")
        if code is None and error.original_error is not None:
            code = code_for(error.original_error)
        path = ".".join(str(key) for key in error.path or ())
        described.append(f"{code or INTERNAL}{f' at {path}' if path else ''}")
    log.info(
        "%s %s failed (trace %s): %s",
        operation_type or "operation",
        operation_name or "(anonymous)",
        trace_id_of(current_traceparent()),
        "; ".join(described),
    )


def should_mask(error: GraphQLError) -> bool:
    """Mask anything without a known code, after logging it with the trace id."""
    original = error.original_error or error
    if error.original_error is None and not error.extensions:
        return False  # a parse or validation error: safe and useful to the client
    if code_for(original) is not None:
        if error.original_error is not None and not error.extensions:
            error.extensions = {"code": code_for(original)}
            if isinstance(original, RateLimited):
                error.extensions["retryAfter"] = round(original.retry_after_s, 3)
        return False
    log.error(
        "unexpected error (trace %s)",
        trace_id_of(current_traceparent()),
        exc_info=(type(original), original, original.__traceback__),
    )
    return True


class MaskUnexpectedErrors(MaskErrors):
    """Errors without a known code reach the client as `Unexpected error.`, coded
    INTERNAL_SERVER_ERROR with the trace id the log line carries (`should_mask`), so a
    report can be matched to the log without showing the client what went wrong."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=should_mask)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {
            "code": INTERNAL,
            "traceId": trace_id_of(current_traceparent()),
        }
        return masked

    def mask(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """`errors` as a client may see them, for results made outside strawberry."""
        return self._process_errors(errors)

    def _process_result(self, result: object) -> None:
        # strawberry checks `isinstance` against a runtime Protocol here, which walks the
        # Protocol's attributes on every operation (about 1% of a busy replica's time).
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]
