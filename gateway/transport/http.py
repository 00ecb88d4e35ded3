"""GraphQL over HTTP, as the GraphQL-over-HTTP spec describes, hardened for the open internet.

One request goes: size and content-type checks → body → persisted query resolution →
cached parse + validation + query limits → the operation, its variables coerced and its
cost with them → authentication → rate limits → storing a persisted query → execution.
Everything before execution is cheap and refuses early; nothing is executed for a
request that fails a check, and a document refused is charged to the client's address
as a query would be.

The response type is `application/graphql-response+json` unless the client's `Accept`
prefers `application/json` (`*/*` and no `Accept` at all get the former, as
graphql-http's audits expect). Status codes: 200 for executed operations (errors inside
`errors`); for a request error (a document that does not parse or validate, an
operation that cannot be selected, variables that do not coerce, a query over a limit),
400 for `application/graphql-response+json` and 200 for `application/json`; 400 for
requests that are malformed whatever the type, 401 for a bad token, 405 for a mutation
over GET, 406/413/415 for transport problems, 429 for rate limits (with `Retry-After`),
503 when a dependency needed before execution is down, and a coded 500 with the trace id
for a bug.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from graphql import ExecutionResult, GraphQLError, OperationType
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import (
    BAD_USER_INPUT,
    INTERNAL,
    RATE_LIMITED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    RateLimited,
    Unauthenticated,
    retry_after_header,
)
from gateway.runtime import GatewayRuntime
from gateway.schema.context import Context
from gateway.transport.apq import PersistedQueryError, resolve_query, store_sent_query
from gateway.transport.client_address import client_info
from gateway.transport.execution import execute_prepared
from gateway.transport.metrics import MUTATION, QUERY, REFUSED
from gateway.transport.negotiation import GRAPHQL_RESPONSE, JSON, json_within, media_type
from gateway.transport.tracing import note_graphql
from storage.errors import Unavailable
from storage.tracing import current_traceparent, trace_id_of

__all__ = ["GraphQLHTTP", "RequestRefused", "client_info"]

log = logging.getLogger(__name__)

# How deeply `variables` and `extensions` may nest (an object or list in one is a level).
MAX_JSON_DEPTH = 32


class RequestRefused(Exception):
    """A request that is answered without executing anything."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def body(self) -> dict[str, Any]:
        return {
            "errors": [{"message": str(self), "extensions": {"code": self.code, **self.extensions}}]
        }


def _loads(raw: str | bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestRefused(400, f"{name} is not valid JSON", BAD_USER_INPUT) from None
    except RecursionError:  # nesting past the interpreter's stack, before any limit
        raise RequestRefused(400, f"{name} is nested too deeply", BAD_USER_INPUT) from None


def _json_param(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    return _loads(raw, name)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise RequestRefused(413, f"request body over {limit} bytes", BAD_USER_INPUT)
        except ValueError:
            raise RequestRefused(400, "bad Content-Length", BAD_USER_INPUT) from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked bodies have no Content-Length to refuse early
            raise RequestRefused(413, f"request body over {limit} bytes", BAD_USER_INPUT)
        chunks.append(chunk)
    return b"".join(chunks)


async def _parse_params(request: Request, limit: int) -> dict[str, Any]:
    """The GraphQL request parameters from a GET query string or a POST body."""
    if request.method == "GET":
        params = request.query_params
        return {
            "query": params.get("query"),
            "operationName": params.get("operationName"),
            "variables": _json_param(params.get("variables"), "variables"),
            "extensions": _json_param(params.get("extensions"), "extensions"),
        }
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in {JSON, "application/graphql"}:
        raise RequestRefused(
            415, "Content-Type must be application/json or application/graphql", BAD_USER_INPUT
        )
    body = await _read_body(request, limit)
    if content_type == "application/graphql":
        return {"query": body.decode("utf-8", errors="replace")}
    params = _loads(body, "body")
    if not isinstance(params, dict):
        raise RequestRefused(400, "body must be a JSON object (batching is off)", BAD_USER_INPUT)
    return params


def _check_types(params: Mapping[str, Any]) -> None:
    for name, kind in (("query", str), ("operationName", str), ("variables", dict)):
        value = params.get(name)
        if value is not None and not isinstance(value, kind):
            raise RequestRefused(400, f"{name} must be a {kind.__name__}", BAD_USER_INPUT)
    extensions = params.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestRefused(400, "extensions must be an object", BAD_USER_INPUT)
    for name in ("variables", "extensions"):
        if not json_within(params.get(name), MAX_JSON_DEPTH):
            raise RequestRefused(
                400, f"{name} nest more than {MAX_JSON_DEPTH} levels deep", BAD_USER_INPUT
            )


def _error_body(errors: list[GraphQLError]) -> dict[str, Any]:
    return {"errors": [error.formatted for error in errors]}


class GraphQLHTTP:
    """The `/graphql` endpoint for GET and POST."""

    def __init__(self, runtime: GatewayRuntime, schema: Any) -> None:
        self._runtime = runtime
        self._schema = schema

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._answer(request)
        operation = getattr(request.state, "operation", REFUSED)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._runtime.metrics.request(operation, response.status_code, elapsed_ms)
        return response

    async def _answer(self, request: Request) -> Response:
        media = GRAPHQL_RESPONSE
        try:
            accepted = media_type(request.headers.get("accept"))
            if accepted is None:
                raise RequestRefused(
                    406, f"responses are {GRAPHQL_RESPONSE} or {JSON}", BAD_USER_INPUT
                )
            media = accepted
            return await self._handle(request, media)
        except RequestRefused as refused:
            return self._respond(refused.body(), refused.status, media, refused.headers)
        except Unauthenticated as exc:
            return self._respond(
                {"errors": [{"message": str(exc), "extensions": {"code": UNAUTHENTICATED}}]},
                401,
                media,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        except RateLimited as exc:
            return self._rate_limited(exc, media)
        except Unavailable as exc:
            log.warning("request refused, dependency down: %s", exc)
            return self._respond(
                {"errors": [{"message": str(exc), "extensions": {"code": UNAVAILABLE}}]},
                503,
                media,
                {"Retry-After": "1"},
            )
        except Exception:  # a bug: answered coded, with the trace id its log line carries
            trace = trace_id_of(current_traceparent())
            log.exception("unexpected error answering a GraphQL request (trace %s)", trace)
            extensions = {"code": INTERNAL, "traceId": trace}
            return self._respond(
                {"errors": [{"message": "Unexpected error.", "extensions": extensions}]},
                500,
                media,
            )

    async def _handle(self, request: Request, media: str) -> Response:
        """Refuse what the request cannot be, authenticate, charge, store, then execute."""
        runtime = self._runtime
        settings = runtime.settings
        params = await _parse_params(request, settings.max_request_bytes)
        _check_types(params)
        try:
            query, sha = await resolve_query(
                runtime.persisted,
                params.get("query"),
                params.get("extensions"),
                persisted_only=settings.persisted_queries_only,
            )
        except PersistedQueryError as exc:
            return self._respond(
                {"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
                exc.status,
                media,
            )
        documents = runtime.documents
        assert documents is not None
        client = client_info(request, settings)
        prepared = documents.prepare(query)
        errors = prepared.errors
        operation_name = params.get("operationName")
        checked = None
        if prepared.document is not None and not errors:
            checked = documents.check_operation(
                prepared.document, operation_name, params.get("variables")
            )
            errors = checked.errors
        if errors or checked is None or checked.operation is None or prepared.document is None:
            # Refused before anything ran, and charged all the same: refusing costs work.
            await runtime.admit(client.ip, None, mutation=False)
            # A request error: graphql-response+json says so in the status, plain JSON
            # clients (GraphQL over HTTP's legacy type) read it in the body only.
            status = 400 if media == GRAPHQL_RESPONSE else 200
            note_graphql(None, operation_name, errors)
            return self._respond(_error_body(list(errors)), status, media)
        operation = checked.operation.operation
        if operation is OperationType.SUBSCRIPTION or (
            request.method == "GET" and operation is OperationType.MUTATION
        ):
            await runtime.admit(client.ip, None, mutation=False)
            if operation is OperationType.SUBSCRIPTION:
                raise RequestRefused(
                    400, "subscriptions run over WebSocket (graphql-transport-ws)", BAD_USER_INPUT
                )
            raise RequestRefused(
                405, "mutations must use POST", BAD_USER_INPUT, headers={"Allow": "POST"}
            )
        request.state.operation = MUTATION if operation is OperationType.MUTATION else QUERY
        claims = await runtime.verify(request.headers.get("authorization"))
        await runtime.admit(client.ip, claims, mutation=operation is OperationType.MUTATION)
        await store_sent_query(
            runtime.persisted,
            params.get("query"),
            sha,
            persisted_only=settings.persisted_queries_only,
        )
        context = Context(runtime=runtime, client=client, claims=claims, request=request)
        result = await execute_prepared(
            self._schema,
            prepared.document,
            context=context,
            variables=params.get("variables"),
            operation_name=operation_name,
            operation_type=operation.value,
        )
        selected = checked.operation.name
        note_graphql(operation.value, selected.value if selected else None, result.errors or ())
        return self._result(result, media)

    def _result(self, result: ExecutionResult, media: str) -> Response:
        """200 for an executed operation, 429 when a rate limit stopped it producing data."""
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        if result.data is not None or not result.errors:
            body["data"] = result.data
        status = 200
        limited = _rate_limit_error(result.errors or [])
        if result.data is None and limited is not None:
            status = 429
            headers = {"Retry-After": retry_after_header(limited)}
            return self._respond(body, status, media, headers)
        return self._respond(body, status, media)

    def _rate_limited(self, exc: RateLimited, media: str) -> Response:
        retry_after = round(exc.retry_after_s, 3)
        return self._respond(
            {
                "errors": [
                    {
                        "message": str(exc),
                        "extensions": {"code": RATE_LIMITED, "retryAfter": retry_after},
                    }
                ]
            },
            429,
            media,
            {"Retry-After": retry_after_header(exc.retry_after_s)},
        )

    def _respond(
        self,
        body: Mapping[str, Any],
        status: int,
        media: str,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        all_headers = {"X-Nova-Replica": self._runtime.replica_id, **(headers or {})}
        return Response(
            json.dumps(body, separators=(",", ":"), default=str),
            status_code=status,
            media_type=f"{media}; charset=utf-8",
            headers=all_headers,
        )


def _rate_limit_error(errors: list[GraphQLError]) -> float | None:
    for error in errors:
        extensions = error.extensions or {}
        if extensions.get("code") == RATE_LIMITED:
            return float(extensions.get("retryAfter", 1.0))
    return None
