"""Parsed and validated documents, cached by query text, and the extension that uses them.

Parsing and validation depend only on the query text (the schema and limits are fixed per
replica), so each distinct text is prepared once: clients repeat the same few documents,
and a hostile one, rejected or not, costs a dictionary lookup the second time. Query
texts come from the network, so the cache is an LRU bounded in entries and in bytes (an
estimate: the text, twice, and the parsed tokens), and documents that fail live apart,
in a quarter of the bytes: a flood of distinct bad documents evicts only other bad ones.

What depends on the request is checked per request (`DocumentCache.check_operation`): the
operation it selects, its variables, coerced, and its cost with their values (a page size
in a variable costs what the same number written in the document costs).

The HTTP endpoint prepares a request's document itself, refuses early on its errors or
operation type, and executes it (`gateway.transport.execution.execute_prepared`); operations over
WebSocket go through strawberry, whose parsing and validation the extension below
replaces with the cache.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_variable_values,
    parse,
    specified_rules,
    validate,
)
from graphql import OperationType as GraphQLOperationType
from graphql.validation.rules.overlapping_fields_can_be_merged import MAX_COMPLEXITY_BUDGET
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from gateway.errors import BAD_USER_INPUT
from gateway.limits.measures import document_depth, operation_cost, operations
from gateway.limits.query_limits import QUERY_TOO_COMPLEX, QueryLimits, limit_rules, too_complex

GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"

# graphql-core's message when fragments nest too deeply for its (recursive) rules, and
# when comparing fields that share a response name spends its budget of comparisons.
_ABORTED = "Validation aborted."
# The estimated memory of a cached entry beyond its text: per parsed token, and per entry.
_TOKEN_BYTES = 640
_ENTRY_BYTES = 1024
# Coercion errors reported for one request at most.
_MAX_VARIABLE_ERRORS = 20

# Strawberry adds these to every validation; the cache replaces strawberry's validation.
_STRAWBERRY_RULES: tuple[type[ASTValidationRule], ...] = (
    MaybeNullValidationRule,
    OneOfInputValidationRule,
)


@dataclass(frozen=True)
class PreparedDocument:
    """A query text's parsed document (None if it did not parse) and its errors."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]


@dataclass(frozen=True)
class CheckedOperation:
    """The operation a request selects, its coerced variables, or why it cannot run."""

    operation: OperationDefinitionNode | None
    variables: dict[str, Any]
    errors: tuple[GraphQLError, ...]


def _with_code(error: GraphQLError, code: str, **extensions: object) -> GraphQLError:
    """Sets the code in place, so a GraphQLSyntaxError stays one (strawberry's
    graphql-transport-ws handler closes the socket on those, as it always has)."""
    error.extensions = {**(error.extensions or {}), "code": code, **extensions}
    return error


def _request_error(message: str, nodes: Any = None) -> GraphQLError:
    """A request the client got wrong: coded, and carrying no exception to mask."""
    return GraphQLError(message, nodes, extensions={"code": BAD_USER_INPUT})


def _weight(query: str, prepared: PreparedDocument) -> int:
    """About the memory an entry holds: its text (the key, and token values copied out of
    it), the parsed tokens and nodes, the errors."""
    tokens = 0
    document = prepared.document
    token = document.loc.start_token if document is not None and document.loc else None
    while token is not None:
        tokens += 1
        token = token.next
    return (
        2 * sys.getsizeof(query) + _TOKEN_BYTES * tokens + _ENTRY_BYTES * (1 + len(prepared.errors))
    )


@dataclass
class _Lru:
    """`PreparedDocument`s by query text, bounded in entries and in (estimated) bytes."""

    max_entries: int
    max_bytes: int
    bytes: int = 0
    entries: OrderedDict[str, tuple[PreparedDocument, int]] = field(default_factory=OrderedDict)

    def get(self, query: str) -> PreparedDocument | None:
        entry = self.entries.get(query)
        if entry is None:
            return None
        self.entries.move_to_end(query)
        return entry[0]

    def put(self, query: str, prepared: PreparedDocument, weight: int) -> None:
        if self.max_entries < 1 or weight > self.max_bytes:
            return  # kept by no one: too big for the whole budget
        old = self.entries.pop(query, None)
        if old is not None:
            self.bytes -= old[1]
        self.entries[query] = (prepared, weight)
        self.bytes += weight
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            _, (_, evicted) = self.entries.popitem(last=False)
            self.bytes -= evicted


class DocumentCache:
    """LRU of `PreparedDocument`s keyed by query text, at most `maxsize` entries and
    `limits.cache_bytes` bytes; failures are cached as well, apart, in a quarter of it.

    `prepare` never awaits, so it is atomic for asyncio; a lock guards the LRU bookkeeping
    for callers on other threads, and is not held while parsing or validating.
    """

    def __init__(self, schema: GraphQLSchema, limits: QueryLimits, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self._schema = schema
        self._limits = limits
        self._rules = (*specified_rules, *_STRAWBERRY_RULES, *limit_rules(limits))
        failures_bytes = limits.cache_bytes // 4
        self._documents = _Lru(maxsize, limits.cache_bytes - failures_bytes)
        self._failures = _Lru(maxsize, failures_bytes)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @property
    def limits(self) -> QueryLimits:
        return self._limits

    @property
    def hits(self) -> int:
        return self._hits

    @property
    def misses(self) -> int:
        return self._misses

    @property
    def bytes(self) -> int:
        """The estimated memory of every entry, documents and failures."""
        return self._documents.bytes + self._failures.bytes

    def __len__(self) -> int:
        return len(self._documents.entries) + len(self._failures.entries)

    def prepare(self, query: str) -> PreparedDocument:
        """The document for `query`, parsed and validated at most once while cached."""
        with self._lock:
            cached = self._documents.get(query) or self._failures.get(query)
            if cached is not None:
                self._hits += 1
                return cached
            self._misses += 1
        prepared = self._prepare(query)
        weight = _weight(query, prepared)
        with self._lock:
            (self._failures if prepared.errors else self._documents).put(query, prepared, weight)
        return prepared

    def validate(self, document: DocumentNode) -> tuple[GraphQLError, ...]:
        """Standard, strawberry and limit rules; errors without a code get one."""
        errors = validate(self._schema, document, self._rules)
        return tuple(self._coded(error, document) for error in errors)

    def check_operation(
        self,
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
    ) -> CheckedOperation:
        """For a valid `document`: the operation `operation_name` selects, `variables`
        coerced to its definitions, and its cost with them held to the limit. Errors are
        BAD_USER_INPUT, or QUERY_TOO_COMPLEX for the cost."""
        chosen = [
            op
            for op in operations(document)
            if operation_name is None or (op.name is not None and op.name.value == operation_name)
        ]
        if len(chosen) != 1:
            message = (
                f"no operation named {operation_name!r}"
                if operation_name is not None
                else "several operations: give operationName"
            )
            return CheckedOperation(None, {}, (_request_error(message),))
        operation = chosen[0]
        if not operation.variable_definitions:
            return CheckedOperation(operation, {}, ())
        coerced = get_variable_values(
            self._schema,
            operation.variable_definitions,
            dict(variables or {}),
            max_errors=_MAX_VARIABLE_ERRORS,
        )
        if isinstance(coerced, list):
            errors = tuple(_request_error(error.message, error.nodes) for error in coerced)
            return CheckedOperation(operation, {}, errors)
        limits = self._limits
        values = coerced.coerced
        cost = operation_cost(self._schema, document, operation, limits.default_list_size, values)
        if cost > limits.max_cost:
            error = too_complex("cost", limits.max_cost, cost, operation)
            return CheckedOperation(operation, values, (error,))
        return CheckedOperation(operation, values, ())

    def _coded(self, error: GraphQLError, document: DocumentNode) -> GraphQLError:
        if error.extensions and "code" in error.extensions:
            return error  # the limit rules and the introspection rule set their own
        if isinstance(error, ValidationAbortedError) and error.message == _ABORTED:
            if self._too_deep(document):
                limit = self._limits.max_depth
                return _with_code(error, QUERY_TOO_COMPLEX, limit="depth", max=limit)
            return too_complex("fieldComparisons", MAX_COMPLEXITY_BUDGET, None, None)
        return _with_code(error, GRAPHQL_VALIDATION_FAILED)

    def _too_deep(self, document: DocumentNode) -> bool:
        """Whether an aborted validation was for depth: graphql-core aborts alike for
        nesting past its recursion limit and for a document whose fields would take too
        many comparisons to check that they merge."""
        try:
            return document_depth(document) > self._limits.max_depth
        except RecursionError:
            return True

    def _prepare(self, query: str) -> PreparedDocument:
        try:
            document = parse(query, max_tokens=self._limits.max_tokens)
        except GraphQLError as error:
            return PreparedDocument(None, (self._parse_error(error),))
        return PreparedDocument(document, self.validate(document))

    def _parse_error(self, error: GraphQLError) -> GraphQLError:
        """graphql-core reports its parse limits as syntax errors; tell them apart."""
        limits = self._limits
        if f"Document contains more than {limits.max_tokens} tokens." in error.message:
            return _with_code(error, QUERY_TOO_COMPLEX, limit="tokens", max=limits.max_tokens)
        if "Document is nested too deeply." in error.message:
            return _with_code(error, QUERY_TOO_COMPLEX, limit="depth", max=limits.max_depth)
        return _with_code(error, GRAPHQL_PARSE_FAILED)


def _placeholder(context: ExecutionContext) -> DocumentNode:
    """An empty operation standing in for a query text that did not parse.

    Strawberry handles exceptions from `on_parse` in `Schema.execute` but not in
    `Schema.stream` (graphql-transport-ws), where the client would get no error at all.
    So the extension never raises: it hands strawberry this stand-in, of a type and name
    that pass its operation checks, and reports the cached parse error from
    `on_validate`, which both paths turn into a pre-execution error with no data.
    """
    allowed = context.allowed_operations
    kind = OperationType.QUERY if OperationType.QUERY in allowed else next(iter(allowed))
    name = context.operation_name
    operation = OperationDefinitionNode(
        operation=GraphQLOperationType(kind.value),
        name=NameNode(value=name) if name is not None else None,
        variable_definitions=(),
        directives=(),
        selection_set=SelectionSetNode(selections=()),
    )
    return DocumentNode(definitions=(operation,))


class PreparedDocuments(SchemaExtension):
    """Parses and validates through a `DocumentCache` instead of strawberry.

    Rules that other extensions add to `execution_context.validation_rules` do not run:
    the cache's rules replace strawberry's validation, so add rules to the cache instead.
    """

    def __init__(self, cache: DocumentCache) -> None:
        super().__init__()
        self._cache = cache
        self._prepared: PreparedDocument | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is None and context.query:
            prepared = self._prepared = self._cache.prepare(context.query)
            if prepared.document is not None:
                context.graphql_document = prepared.document
            else:
                context.graphql_document = _placeholder(context)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self._prepared is not None:
            errors = self._prepared.errors
        else:  # a document handed in by the caller or another extension: not cached
            assert context.graphql_document is not None
            errors = self._cache.validate(context.graphql_document)
        if not errors and context.graphql_document is not None:
            checked = self._cache.check_operation(
                context.graphql_document, context.operation_name, context.variables
            )
            errors = checked.errors
        # An empty list tells strawberry validation already ran; errors end the request.
        context.pre_execution_errors = list(errors)
        yield


def prepared_documents(cache: DocumentCache) -> Callable[[], SchemaExtension]:
    """A factory for `strawberry.Schema(extensions=[...])`: one extension per request."""
    return functools.partial(PreparedDocuments, cache)
