"""Validation rules that bound a GraphQL document before it runs: depth, aliases and cost.

They run beside graphql-core's standard rules, once per distinct query text (see
`gateway.transport.documents`), so an expensive document is refused before any resolver runs and a
repeated one costs a dictionary lookup. Errors carry `extensions.code` QUERY_TOO_COMPLEX
with the `limit` that was hit, its `max` and the `actual` value, so clients can tell which
knob to turn.

The measures expand fragments (named and inline), memoise each named fragment so a
fragment that spreads another twice, many times over, stays linear, and treat a spread
that closes a cycle as empty: `NoFragmentCyclesRule` reports the cycle itself.
Introspection (`__schema`, `__type`) is exempt from depth and cost; graphql-core's
standard `MaxIntrospectionDepthRule` bounds it instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from graphql import (
    SKIP,
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    Node,
    NoSchemaIntrospectionCustomRule,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VisitorAction,
    get_named_type,
    is_composite_type,
)

from gateway.errors import FORBIDDEN
from gateway.settings import GatewaySettings

QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"

_INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
_PAGE_ARGUMENTS = ("first", "last")
# Costs and alias counts saturate here: exact beyond it means nothing, and it stays an
# integer that JavaScript clients read without losing precision.
CEILING = 2**53 - 1


@dataclass(frozen=True)
class QueryLimits:
    """How large a document may be; `introspection=False` forbids `__schema`/`__type`."""

    max_depth: int
    max_aliases: int
    max_tokens: int
    max_cost: int
    default_list_size: int
    introspection: bool = True

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        numbers = (self.max_depth, self.max_aliases, self.max_cost, self.default_list_size)
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


# --- Measures ---------------------------------------------------------------------------


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]


class _Measure(ABC):
    """Walks selection sets; each named fragment is measured once, cycles count as 0."""

    def __init__(self, document: DocumentNode) -> None:
        self._fragments = _fragments(document)
        self._memo: dict[str, int] = {}
        self._active: set[str] = set()

    def spread(self, name: str) -> int:
        if name in self._memo:
            return self._memo[name]
        fragment = self._fragments.get(name)
        if fragment is None or name in self._active:
            return 0  # unknown fragment or a cycle: the standard rules report both
        self._active.add(name)
        try:
            value = self.fragment(fragment)
        finally:
            self._active.discard(name)
        self._memo[name] = value
        return value

    @abstractmethod
    def fragment(self, fragment: FragmentDefinitionNode) -> int: ...


class _Depth(_Measure):
    """Deepest nesting of fields; introspection subtrees count as 0."""

    def fragment(self, fragment: FragmentDefinitionNode) -> int:
        return self.selections(fragment.selection_set)

    def selections(self, selection_set: SelectionSetNode) -> int:
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                deepest = max(deepest, self.field(selection))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self.selections(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self.spread(selection.name.value))
        return deepest

    def field(self, node: FieldNode) -> int:
        if node.name.value in _INTROSPECTION_ROOTS:
            return 0
        if node.selection_set is None:
            return 1
        return 1 + self.selections(node.selection_set)


class _Aliases(_Measure):
    """Aliased fields, counted once per use of the fragment that holds them."""

    def fragment(self, fragment: FragmentDefinitionNode) -> int:
        return self.selections(fragment.selection_set)

    def selections(self, selection_set: SelectionSetNode) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += 1 if selection.alias else 0
                if selection.selection_set is not None:
                    total += self.selections(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += self.selections(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value)
        return min(total, CEILING)


class _Cost(_Measure):
    """cost(field) = weight + page size * cost(selections); see `document_cost`."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, list_size: int) -> None:
        super().__init__(document)
        self._schema = schema
        self._list_size = list_size

    def operation(self, operation: OperationDefinitionNode) -> int:
        root = self._schema.get_root_type(operation.operation)
        return self.selections(operation.selection_set, root)

    def fragment(self, fragment: FragmentDefinitionNode) -> int:
        parent = self._schema.get_type(fragment.type_condition.name.value)
        return self.selections(fragment.selection_set, parent)

    def selections(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                narrowed = self._schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, narrowed)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value)
        return min(total, CEILING)

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> int:
        name = node.name.value
        if name in _INTROSPECTION_ROOTS or name == "__typename":
            return 0
        definition = _field_definition(parent, name)
        if definition is None:
            return 0  # an unknown field: FieldsOnCorrectTypeRule reports it
        returns = get_named_type(definition.type)
        weight = 1 if is_composite_type(returns) else 0
        if node.selection_set is None:
            return weight
        below = self.selections(node.selection_set, returns)
        return min(weight + self.page_size(node, definition) * below, CEILING)

    def page_size(self, node: FieldNode, definition: GraphQLField) -> int:
        """How many items one selection of this field may return: `first`/`last`, else 1.

        Arguments given in the document win over absent ones (a connection declaring
        both, asked for `first: 10`, costs 10 per item); when both are given the larger
        one counts. Variables are unknown when the document is cached, so they count as
        the argument's declared default, or `default_list_size` without one.
        """
        declared = [name for name in _PAGE_ARGUMENTS if name in definition.args]
        if not declared:
            return 1
        given = {argument.name.value: argument.value for argument in node.arguments or ()}
        asked = [
            name
            for name in declared
            if name in given and not isinstance(given[name], NullValueNode)
        ]
        if asked:
            return max(self._size(given[name], definition.args[name]) for name in asked)
        defaults = [_declared_default(definition.args[name]) for name in declared]
        known = [default for default in defaults if default is not None]
        return max(known) if known else self._list_size

    def _size(self, value: Node, argument: GraphQLArgument) -> int:
        if isinstance(value, IntValueNode):
            return min(max(0, int(value.value)), CEILING)
        default = _declared_default(argument)
        return self._list_size if default is None else default


def _field_definition(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        field: GraphQLField | None = parent.fields.get(name)
        return field
    return None  # unions and unknown types only have __typename


def _declared_default(argument: GraphQLArgument) -> int | None:
    """The argument's default page size, if it declares an integer one."""
    if argument.default is not None:
        literal = argument.default.literal
        value = int(literal.value) if isinstance(literal, IntValueNode) else argument.default.value
    else:
        value = argument.default_value
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(0, value), CEILING)
    return None


def operation_depths(document: DocumentNode) -> list[tuple[OperationDefinitionNode, int]]:
    """Each operation with its deepest field nesting, fragments expanded."""
    measure = _Depth(document)
    return [(op, measure.selections(op.selection_set)) for op in operations(document)]


def document_depth(document: DocumentNode) -> int:
    """The deepest field nesting of any operation (0 without operations)."""
    return max((depth for _, depth in operation_depths(document)), default=0)


def document_aliases(document: DocumentNode) -> int:
    """Aliased fields over all operations, each fragment counted once per spread."""
    measure = _Aliases(document)
    return min(sum(measure.selections(op.selection_set) for op in operations(document)), CEILING)


def operation_costs(
    schema: GraphQLSchema, document: DocumentNode, default_list_size: int
) -> list[tuple[OperationDefinitionNode, int]]:
    """Each operation with its cost, in document order."""
    measure = _Cost(schema, document, default_list_size)
    return [(op, measure.operation(op)) for op in operations(document)]


def document_cost(schema: GraphQLSchema, document: DocumentNode, default_list_size: int) -> int:
    """The cost of the document's most expensive operation (0 without operations).

    Fields returning an object, interface or union weigh 1, leaves 0; a field's selection
    set costs once per item it may return (`first`/`last`, see `_Cost.page_size`); lists
    without those arguments count once, since they sit inside a bounded page.
    """
    costs = operation_costs(schema, document, default_list_size)
    return max((cost for _, cost in costs), default=0)


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
