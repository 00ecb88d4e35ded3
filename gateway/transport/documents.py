"""Parsed and validated documents, cached by query text, and the extension that uses them.

Parsing and validation depend only on the query text (the schema and limits are fixed per
replica), so each distinct text is prepared once: clients repeat the same few documents,
and a hostile one, rejected or not, costs a dictionary lookup the second time. The cache
is a bounded LRU, because query texts come from the network.

The HTTP endpoint prepares a request's document itself, refuses early on its errors or
operation type, and executes it (`gateway.transport.execution.execute_prepared`); operations over
WebSocket go through strawberry, whose parsing and validation the extension below
replaces with the cache.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    specified_rules,
    validate,
)
from graphql import OperationType as GraphQLOperationType
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType

from gateway.limits.query_limits import QUERY_TOO_COMPLEX, QueryLimits, limit_rules

GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"

# graphql-core's message when fragments nest too deeply for its (recursive) rules.
_NESTING_ABORTED = "Validation aborted."

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


def _with_code(error: GraphQLError, code: str, **extensions: object) -> GraphQLError:
    """Sets the code in place, so a GraphQLSyntaxError stays one (strawberry's
    graphql-transport-ws handler closes the socket on those, as it always has)."""
    error.extensions = {**(error.extensions or {}), "code": code, **extensions}
    return error


class DocumentCache:
    """LRU of `PreparedDocument`s keyed by query text; failures are cached as well.

    `prepare` never awaits, so it is atomic for asyncio; a lock guards the LRU bookkeeping
    for callers on other threads, and is not held while parsing or validating.
    """

    def __init__(self, schema: GraphQLSchema, limits: QueryLimits, maxsize: int) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self._schema = schema
        self._limits = limits
        self._rules = (*specified_rules, *_STRAWBERRY_RULES, *limit_rules(limits))
        self._maxsize = maxsize
        self._entries: OrderedDict[str, PreparedDocument] = OrderedDict()
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

    def __len__(self) -> int:
        return len(self._entries)

    def prepare(self, query: str) -> PreparedDocument:
        """The document for `query`, parsed and validated at most once while cached."""
        with self._lock:
            cached = self._entries.get(query)
            if cached is not None:
                self._entries.move_to_end(query)
                self._hits += 1
                return cached
            self._misses += 1
        prepared = self._prepare(query)
        with self._lock:
            self._entries[query] = prepared
            while len(self._entries) > self._maxsize:
                self._entries.popitem(last=False)
        return prepared

    def validate(self, document: DocumentNode) -> tuple[GraphQLError, ...]:
        """Standard, strawberry and limit rules; errors without a code get one."""
        return tuple(self._coded(error) for error in validate(self._schema, document, self._rules))

    def _coded(self, error: GraphQLError) -> GraphQLError:
        if error.extensions and "code" in error.extensions:
            return error  # the limit rules and the introspection rule set their own
        if isinstance(error, ValidationAbortedError) and error.message == _NESTING_ABORTED:
            return _with_code(error, QUERY_TOO_COMPLEX, limit="depth", max=self._limits.max_depth)
        return _with_code(error, GRAPHQL_VALIDATION_FAILED)

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
        # An empty list tells strawberry validation already ran; errors end the request.
        context.pre_execution_errors = list(errors)
        yield


def prepared_documents(cache: DocumentCache) -> Callable[[], SchemaExtension]:
    """A factory for `strawberry.Schema(extensions=[...])`: one extension per request."""
    return functools.partial(PreparedDocuments, cache)
