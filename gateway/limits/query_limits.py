"""Validation rules that bound a GraphQL document before it runs: depth, aliases and cost.

They run beside graphql-core's standard rules, once per distinct query text (see
`gateway.transport.documents`), so an expensive document is refused before any resolver runs and a
repeated one costs a dictionary lookup. Errors carry `extensions.code` QUERY_TOO_COMPLEX
with the `limit` that was hit, its `max` and the `actual` value, so clients can tell which
knob to turn.

The measures themselves are in `gateway.limits.measures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

from graphql import (
    SKIP,
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    Node,
    NoSchemaIntrospectionCustomRule,
    OperationDefinitionNode,
    ValidationRule,
    VisitorAction,
)

from gateway.errors import FORBIDDEN
from gateway.limits.measures import document_aliases, operation_costs, operation_depths
from gateway.settings import GatewaySettings

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"


DEFAULT_CACHE_BYTES = 32 * 1_048_576


@dataclass(frozen=True)
class QueryLimits:
    """How large a document may be; `introspection=False` forbids `__schema`/`__type`.
    `cache_bytes` bounds the memory of the cache that applies them once per text
    (`gateway.transport.documents`)."""

    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int
    default_list_size: int
    introspection: bool = True
    cache_bytes: int = DEFAULT_CACHE_BYTES

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        numbers = (
            self.max_depth,
            self.max_aliases,
            self.max_cost,
            self.default_list_size,
            self.cache_bytes,
        )
        if min(numbers) < 0:
            raise ValueError("query limits must not be negative")

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> QueryLimits:
        return cls(
            max_depth=settings.query_max_depth,
            max_aliases=settings.query_max_aliases,
            max_tokens=settings.query_max_tokens,
            max_cost=settings.query_max_cost,
            default_list_size=settings.query_default_list_size,
            introspection=settings.introspection,
            cache_bytes=settings.query_document_cache_bytes,
        )


def too_complex(limit: str, maximum: int, actual: int | None, node: Node | None) -> GraphQLError:
    """The error for a document over one of the limits; `actual` is None when unknown."""
    extensions: dict[str, Any] = {"code": QUERY_TOO_COMPLEX, "limit": limit, "max": maximum}
    shown = "is" if actual is None else f"{actual} is"
    if actual is not None:
        extensions["actual"] = actual
    return GraphQLError(
        f"Query is too complex: its {limit} {shown} over the limit of {maximum}.",
        node,
        extensions=extensions,
    )


# --- Rules ------------------------------------------------------------------------------


class _LimitRule(ValidationRule):
    """Measures the whole document on entry, reports at most one error, skips the rest."""

    limits: ClassVar[QueryLimits]

    def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
        error = self.check(node)
        if error is not None:
            self.report_error(error)
        return SKIP

    def check(self, document: DocumentNode) -> GraphQLError | None:
        """The one error for `document`, or None; each concrete rule below defines it."""
        raise NotImplementedError(f"{type(self).__name__} must define check()")


def _worst(
    limit: str, maximum: int, measured: list[tuple[OperationDefinitionNode, int]]
) -> GraphQLError | None:
    """The error for the operation measuring the most, if that is over `maximum`."""
    if not measured:
        return None
    operation, actual = max(measured, key=lambda pair: pair[1])
    return too_complex(limit, maximum, actual, operation) if actual > maximum else None


class DepthRule(_LimitRule):
    def check(self, document: DocumentNode) -> GraphQLError | None:
        return _worst("depth", self.limits.max_depth, operation_depths(document))


class AliasesRule(_LimitRule):
    def check(self, document: DocumentNode) -> GraphQLError | None:
        maximum = self.limits.max_aliases
        aliases = document_aliases(document)
        return too_complex("aliases", maximum, aliases, None) if aliases > maximum else None


class CostRule(_LimitRule):
    def check(self, document: DocumentNode) -> GraphQLError | None:
        limits = self.limits
        costs = operation_costs(self.context.schema, document, limits.default_list_size)
        return _worst("cost", limits.max_cost, costs)


class ForbidIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's rule, with the FORBIDDEN code the gateway's clients expect."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": FORBIDDEN}
        super().report_error(error)


def _bind(rule: type[_LimitRule], limits: QueryLimits) -> type[ASTValidationRule]:
    """A subclass of `rule` with `limits` fixed: graphql-core instantiates rule classes."""
    return cast("type[ASTValidationRule]", type(rule.__name__, (rule,), {"limits": limits}))


def limit_rules(limits: QueryLimits) -> list[type[ASTValidationRule]]:
    """The rules to run with `specified_rules`; introspection is forbidden when disabled."""
    rules = [_bind(rule, limits) for rule in (DepthRule, AliasesRule, CostRule)]
    if not limits.introspection:
        rules.append(ForbidIntrospectionRule)
    return rules
