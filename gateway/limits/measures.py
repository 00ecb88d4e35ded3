"""How large a document is: its depth, its aliases and its cost, each measured once per
document (the validation rules in `gateway.limits.query_limits` hold them to the limits).

The measures expand fragments (named and inline), memoise each named fragment so a
fragment that spreads another twice, many times over, stays linear, and treat a spread
that closes a cycle as empty: `NoFragmentCyclesRule` reports the cycle itself.
Introspection (`__schema`, `__type`) is exempt from depth and cost; graphql-core's
standard `MaxIntrospectionDepthRule` bounds it instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    Node,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_composite_type,
)

_INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
_PAGE_ARGUMENTS = ("first", "last")
# Costs and alias counts saturate here: exact beyond it means nothing, and it stays an
# integer that JavaScript clients read without losing precision.
CEILING = 2**53 - 1


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
    """cost(field) = weight + page size * cost(selections); see `document_cost`.

    With `variables` (a request's, coerced), a page size given by a variable is its value.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        list_size: int,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(document)
        self._schema = schema
        self._list_size = list_size
        self._variables = variables

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
        one counts. A variable counts as its value when the request's variables are
        known; otherwise (the cached document), or when it is null or not given, as the
        argument's declared default, or `default_list_size` without one.
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
        if isinstance(value, VariableNode) and self._variables is not None:
            given = self._variables.get(value.name.value)
            if isinstance(given, int) and not isinstance(given, bool):
                return min(max(0, given), CEILING)
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


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    default_list_size: int,
    variables: Mapping[str, Any],
) -> int:
    """The cost of one operation of `document` with a request's coerced `variables`."""
    return _Cost(schema, document, default_list_size, variables).operation(operation)


def document_cost(schema: GraphQLSchema, document: DocumentNode, default_list_size: int) -> int:
    """The cost of the document's most expensive operation (0 without operations).

    Fields returning an object, interface or union weigh 1, leaves 0; a field's selection
    set costs once per item it may return (`first`/`last`, see `_Cost.page_size`); lists
    without those arguments count once, since they sit inside a bounded page.
    """
    costs = operation_costs(schema, document, default_list_size)
    return max((cost for _, cost in costs), default=0)
