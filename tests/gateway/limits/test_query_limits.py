"""Query limits and the document cache, against a small schema built here (no servers).

The schema has a recursive type (`Item.child`), a list paged by `first`/`last`
(`Item.children`, `Query.items`), one with a declared default page (`Item.page`) and a
connection (`Query.friends`), and its resolvers record every call, so a test can show a
refused document never reached them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator
from typing import Any

import pytest
import strawberry
from graphql import (
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    get_introspection_query,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from deployments.settings import Settings
from gateway.limits.measures import (
    CEILING,
    document_cost,
    document_depth,
    operation_cost,
    operations,
)
from gateway.limits.query_limits import QUERY_TOO_COMPLEX, QueryLimits
from gateway.transport.documents import DocumentCache, PreparedDocument, prepared_documents

CALLS: list[str] = []


@strawberry.type
class Item:
    id: int

    @strawberry.field
    def child(self) -> Item:
        CALLS.append("child")
        return Item(id=self.id + 1)

    @strawberry.field
    def children(self, first: int | None = None, last: int | None = None) -> list[Item]:
        CALLS.append("children")
        return [Item(id=self.id + n) for n in range(first or last or 2)]

    @strawberry.field
    def page(self, first: int = 10) -> list[Item]:
        CALLS.append("page")
        return [Item(id=self.id + n) for n in range(first)]


@strawberry.type
class Edge:
    node: Item


@strawberry.type
class Connection:
    edges: list[Edge]


@strawberry.type
class Query:
    @strawberry.field
    def item(self) -> Item:
        CALLS.append("item")
        return Item(id=1)

    @strawberry.field
    def items(self, first: int | None = None, last: int | None = None) -> list[Item]:
        CALLS.append("items")
        return [Item(id=n) for n in range(first or last or 2)]

    @strawberry.field
    def friends(self, first: int | None = None, last: int | None = None) -> Connection:
        CALLS.append("friends")
        return Connection(edges=[Edge(node=Item(id=n)) for n in range(first or 2)])


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[Item, None]:
        CALLS.append("ticks")
        yield Item(id=1)


LIMITS = QueryLimits(
    max_depth=10, max_aliases=15, max_tokens=2000, max_cost=5000, default_list_size=100
)
PLAIN = strawberry.Schema(query=Query, subscription=Subscription)


@pytest.fixture(autouse=True)
def no_calls() -> Iterator[None]:
    CALLS.clear()
    yield
    CALLS.clear()


def cache_for(limits: QueryLimits = LIMITS, maxsize: int = 100) -> DocumentCache:
    return DocumentCache(PLAIN._schema, limits, maxsize)


def schema_with(cache: DocumentCache, *first: Any) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        subscription=Subscription,
        extensions=[*first, prepared_documents(cache)],
    )


def nested(depth: int) -> str:
    """A query whose deepest field is at `depth`: item > child > ... > id."""
    return "{ item { " + "child { " * (depth - 2) + "id" + " }" * (depth - 1) + " }"


def the_error(prepared: PreparedDocument) -> GraphQLError:
    assert len(prepared.errors) == 1, prepared.errors
    return prepared.errors[0]


def too_complex(prepared: PreparedDocument, limit: str) -> dict[str, Any]:
    extensions = the_error(prepared).extensions
    assert extensions is not None
    assert extensions["code"] == QUERY_TOO_COMPLEX
    assert extensions["limit"] == limit
    return extensions


def code_of(error: GraphQLError) -> Any:
    return (error.extensions or {}).get("code")


# --- Limits from settings ---------------------------------------------------------------


def test_limits_from_settings_copy_the_query_settings() -> None:
    settings = Settings(query_max_depth=7, query_max_cost=99, introspection=False)
    limits = QueryLimits.from_settings(settings)
    assert limits == QueryLimits(
        max_depth=7,
        max_aliases=settings.query_max_aliases,
        max_tokens=settings.query_max_tokens,
        max_cost=99,
        default_list_size=settings.query_default_list_size,
        introspection=False,
    )


# --- Depth ------------------------------------------------------------------------------


def test_depth_at_the_limit_is_accepted() -> None:
    query = nested(10)
    assert document_depth(parse(query)) == 10
    assert cache_for().prepare(query).errors == ()


def test_depth_over_the_limit_is_rejected_with_max_and_actual() -> None:
    prepared = cache_for().prepare(nested(11))
    assert too_complex(prepared, "depth") == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "depth",
        "max": 10,
        "actual": 11,
    }
    assert the_error(prepared).locations  # points at the operation


def test_depth_over_the_limit_through_named_and_inline_fragments_is_rejected() -> None:
    query = """
        { item { ...Deep } }
        fragment Deep on Item { child { ... on Item { child { ...Deeper } } } }
        fragment Deeper on Item { child { child { child { child { child { child {
            child { id } } } } } } } }
    """
    assert document_depth(parse(query)) == 11
    assert too_complex(cache_for().prepare(query), "depth")["actual"] == 11


def test_parser_nesting_bomb_is_rejected_as_too_deep() -> None:
    roomy = QueryLimits(**{**LIMITS.__dict__, "max_tokens": 100_000})
    query = "{ item " + "{ child " * 5000 + "{ id" + " }" * 5002  # past the recursion limit
    extensions = too_complex(cache_for(roomy).prepare(query), "depth")
    assert "actual" not in extensions


def fragment_chain(levels: int) -> str:
    """Fragment n nests fragment n+1 one field deeper."""
    fragments = " ".join(
        f"fragment F{n} on Item {{ child {{ ...F{n + 1} }} }}" for n in range(levels)
    )
    return f"{{ item {{ ...F0 }} }} {fragments} fragment F{levels} on Item {{ id }}"


def test_fragment_chain_too_deep_for_validation_is_rejected_as_too_deep() -> None:
    roomy = QueryLimits(**{**LIMITS.__dict__, "max_tokens": 100_000})
    errors = cache_for(roomy).prepare(fragment_chain(1000)).errors
    assert errors
    assert {(code_of(error), (error.extensions or {}).get("limit")) for error in errors} == {
        (QUERY_TOO_COMPLEX, "depth")
    }


# --- Aliases ----------------------------------------------------------------------------


def test_aliases_at_the_limit_are_accepted() -> None:
    query = "{ " + " ".join(f"a{n}: item {{ id }}" for n in range(15)) + " }"
    assert cache_for().prepare(query).errors == ()


def test_alias_bomb_is_rejected() -> None:
    query = "{ " + " ".join(f"a{n}: item {{ id }}" for n in range(200)) + " }"
    extensions = too_complex(cache_for().prepare(query), "aliases")
    assert (extensions["max"], extensions["actual"]) == (15, 200)


def test_aliases_in_a_fragment_count_once_per_spread() -> None:
    fields = " ".join(f"f{n}: id" for n in range(5))
    query = "{ a: item { ...F } b: item { ...F } c: item { ...F } } "
    query += f"fragment F on Item {{ {fields} }}"
    assert too_complex(cache_for().prepare(query), "aliases")["actual"] == 3 + 3 * 5


# --- Cost -------------------------------------------------------------------------------


def test_cost_bomb_of_nested_pages_is_rejected() -> None:
    query = "{ items(first: 100) { children(first: 100) { children(last: 100) { id } } } }"
    # items weighs 1, plus 100 times (children: 1 + 100 times (children: 1 + 0)).
    extensions = too_complex(cache_for().prepare(query), "cost")
    assert (extensions["max"], extensions["actual"]) == (5000, 1 + 100 * (1 + 100 * 1))


def test_cost_counts_lists_inside_a_connection_once_per_page() -> None:
    query = "{ friends(first: 20) { edges { node { child { id } } } } }"
    # friends 1 + 20 times (edges 1 + node 1 + child 1); edges is not multiplied again.
    assert document_cost(PLAIN._schema, parse(query), 100) == 1 + 20 * 3


def test_cost_with_a_variable_uses_the_declared_default_else_the_default_list_size() -> None:
    declared = "query ($n: Int!) { item { page(first: $n) { child { id } } } }"
    undeclared = "query ($n: Int) { item { children(first: $n) { child { id } } } }"
    absent = "{ item { children { child { id } } } }"
    assert document_cost(PLAIN._schema, parse(declared), 100) == 1 + (1 + 10 * 1)
    assert document_cost(PLAIN._schema, parse(undeclared), 100) == 1 + (1 + 100 * 1)
    assert document_cost(PLAIN._schema, parse(absent), 100) == 1 + (1 + 100 * 1)


def test_cost_clamps_a_negative_page_size_to_zero() -> None:
    query = "{ items(first: -5) { child { id } } }"
    assert document_cost(PLAIN._schema, parse(query), 100) == 1


def test_cost_ignores_introspection_and_typename() -> None:
    query = "{ __typename item { __typename } __schema { types { name } } }"
    assert document_cost(PLAIN._schema, parse(query), 100) == 1


def test_cost_reports_the_most_expensive_operation() -> None:
    query = """
        query Cheap { item { id } }
        query Dear { items(first: 100) { children(first: 100) { child { id } } } }
    """
    error = the_error(cache_for().prepare(query))
    assert (error.extensions or {}).get("actual") == 1 + 100 * (1 + 100 * 1)
    operation = error.nodes[0] if error.nodes else None
    assert isinstance(operation, OperationDefinitionNode)
    assert operation.name is not None
    assert operation.name.value == "Dear"


def doubling_chain(levels: int) -> str:
    """Fragment n selects fragment n+1 twice: 2**levels fields once expanded."""
    fragments = " ".join(
        f"fragment F{n} on Item {{ child {{ ...F{n + 1} }} twin: child {{ ...F{n + 1} }} }}"
        for n in range(levels)
    )
    return f"{{ item {{ ...F0 }} }} {fragments} fragment F{levels} on Item {{ id }}"


@pytest.mark.timeout(10)
def test_doubling_fragment_chain_is_measured_without_expanding_it() -> None:
    levels = 40
    cost = 0
    for _ in range(levels):
        cost = 2 * (1 + cost)  # each fragment: two `child` fields over the next one
    query = doubling_chain(levels)
    assert document_cost(PLAIN._schema, parse(query), 100) == 1 + cost
    limits = {(error.extensions or {}).get("limit") for error in cache_for().prepare(query).errors}
    assert limits == {"depth", "aliases", "cost"}


def test_cost_saturates_at_a_json_safe_integer() -> None:
    assert document_cost(PLAIN._schema, parse(doubling_chain(80)), 100) == CEILING == 2**53 - 1


# --- Parsing ----------------------------------------------------------------------------


def test_token_bomb_is_rejected_with_the_tokens_limit() -> None:
    query = "{ item { " + "id " * 5000 + "} }"
    prepared = cache_for().prepare(query)
    assert prepared.document is None
    assert too_complex(prepared, "tokens") == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "tokens",
        "max": 2000,
    }


def test_comment_bomb_is_rejected_with_the_tokens_limit() -> None:
    query = "{ item { id } }" + "\n#" * 5000
    assert too_complex(cache_for().prepare(query), "tokens")["max"] == 2000


def test_syntax_error_has_the_parse_failed_code_and_keeps_its_location() -> None:
    prepared = cache_for().prepare("{ item { id }")
    error = the_error(prepared)
    assert prepared.document is None
    assert code_of(error) == "GRAPHQL_PARSE_FAILED"
    assert isinstance(error, GraphQLSyntaxError)
    assert error.message.startswith("Syntax Error:")
    assert error.locations


# --- Validation -------------------------------------------------------------------------


def test_validation_error_has_the_validation_failed_code_and_keeps_its_message() -> None:
    prepared = cache_for().prepare("{ item { nope } }")
    error = the_error(prepared)
    assert prepared.document is not None
    assert code_of(error) == "GRAPHQL_VALIDATION_FAILED"
    assert error.message == "Cannot query field 'nope' on type 'Item'."
    assert error.locations


@pytest.mark.timeout(10)
def test_fragment_cycle_is_reported_without_hanging() -> None:
    query = """
        { item { ...A } }
        fragment A on Item { child { ...B } }
        fragment B on Item { child { ...A } }
    """
    errors = cache_for().prepare(query).errors
    assert [error.message for error in errors] == [
        "Cannot spread fragment 'A' within itself via 'B'."
    ]
    assert code_of(errors[0]) == "GRAPHQL_VALIDATION_FAILED"


def test_introspection_off_is_forbidden() -> None:
    cache = cache_for(QueryLimits(**{**LIMITS.__dict__, "introspection": False}))
    errors = cache.prepare("{ __schema { queryType { name } } }").errors
    assert errors
    assert {code_of(error) for error in errors} == {"FORBIDDEN"}
    assert cache.prepare("{ __typename item { id } }").errors == ()


async def test_introspection_on_serves_the_standard_introspection_query_at_depth_10() -> None:
    query = get_introspection_query()
    cache = cache_for()
    assert cache.limits.max_depth == 10
    assert cache.prepare(query).errors == ()
    result = await schema_with(cache).execute(query)
    assert result.errors is None
    assert result.data is not None
    assert result.data["__schema"]["queryType"]["name"] == "Query"


def test_deep_introspection_is_still_bounded_by_the_standard_rules() -> None:
    query = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"
    error = the_error(cache_for().prepare(query))
    assert error.message == "Maximum introspection depth exceeded"


# --- The cache --------------------------------------------------------------------------


def test_repeated_query_is_a_cache_hit() -> None:
    cache = cache_for()
    first = cache.prepare("{ item { id } }")
    assert (cache.hits, cache.misses) == (0, 1)
    assert cache.prepare("{ item { id } }") is first
    assert (cache.hits, cache.misses) == (1, 1)


def test_repeated_bad_query_is_a_cache_hit() -> None:
    cache = cache_for()
    for query in ("{ item {", nested(40), "{ nope }"):
        first = cache.prepare(query)
        assert first.errors
        assert cache.prepare(query) is first
    assert (cache.hits, cache.misses) == (3, 3)


def test_cache_evicts_the_least_recently_used_query_beyond_maxsize() -> None:
    cache = cache_for(maxsize=2)
    a, b, c = "{ item { id } }", "{ items { id } }", "{ friends { edges { node { id } } } }"
    cache.prepare(a)
    cache.prepare(b)
    cache.prepare(a)  # a is now the most recent
    cache.prepare(c)  # evicts b
    assert len(cache) == 2
    cache.prepare(a)
    cache.prepare(b)
    assert (cache.hits, cache.misses) == (2, 4)


# --- Through strawberry -----------------------------------------------------------------


def assert_refused(result: ExecutionResult, code: str) -> GraphQLError:
    assert result.data is None
    assert result.errors
    assert code_of(result.errors[0]) == code
    assert CALLS == []
    return result.errors[0]


async def test_execute_returns_query_too_complex_without_running_resolvers() -> None:
    cache = cache_for()
    schema = schema_with(cache)
    error = assert_refused(await schema.execute(nested(11)), QUERY_TOO_COMPLEX)
    assert (error.extensions or {}).get("limit") == "depth"
    cost_bomb = "{ items(first: 100) { children(first: 100) { child { id } } } }"
    assert_refused(await schema.execute(cost_bomb), QUERY_TOO_COMPLEX)
    assert (cache.hits, cache.misses) == (0, 2)
    assert_refused(await schema.execute(cost_bomb), QUERY_TOO_COMPLEX)
    assert (cache.hits, cache.misses) == (1, 2)


async def test_execute_runs_a_valid_query_through_the_cache() -> None:
    cache = cache_for()
    schema = schema_with(cache)
    for _ in range(2):
        result = await schema.execute("{ item { child { id } } }")
        assert result.errors is None
        assert result.data == {"item": {"child": {"id": 2}}}
    assert (cache.hits, cache.misses) == (1, 1)
    assert CALLS == ["item", "child"] * 2


async def test_execute_reports_a_parse_error_with_its_code_even_for_a_named_operation() -> None:
    schema = schema_with(cache_for())
    result = await schema.execute("query Named { item {", operation_name="Named")
    error = assert_refused(result, "GRAPHQL_PARSE_FAILED")
    assert isinstance(error, GraphQLSyntaxError)


def test_execute_sync_refuses_through_the_cache() -> None:
    cache = cache_for()
    schema = schema_with(cache)
    assert_refused(schema.execute_sync(nested(11)), QUERY_TOO_COMPLEX)
    assert_refused(schema.execute_sync("{ item {"), "GRAPHQL_PARSE_FAILED")
    assert cache.misses == 2


async def first_result(schema: strawberry.Schema, query: str) -> ExecutionResult:
    results = await schema.subscribe(query)
    assert not isinstance(results, ExecutionResult), "expected a stream"
    async for result in results:
        assert isinstance(result, ExecutionResult)
        return result
    raise AssertionError("the stream ended without a result")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("subscription { ticks {", "GRAPHQL_PARSE_FAILED"),
        ("subscription { ticks { " + "id " * 3000 + "} }", QUERY_TOO_COMPLEX),
        ("subscription { ticks { " + "child { " * 10 + "id" + " }" * 12, QUERY_TOO_COMPLEX),
        ("subscription { ticks { nope } }", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_subscribe_refuses_through_the_cache(query: str, code: str) -> None:
    cache = cache_for()
    assert_refused(await first_result(schema_with(cache), query), code)
    assert cache.misses == 1


async def test_subscribe_runs_a_valid_subscription_through_the_cache() -> None:
    cache = cache_for()
    result = await first_result(schema_with(cache), "subscription { ticks { id } }")
    assert result.errors is None
    assert result.data == {"ticks": {"id": 1}}
    assert cache.misses == 1


class HandsInADocument(SchemaExtension):
    """Stands for a caller (say, persisted queries) that sets the document itself."""

    def on_parse(self) -> Iterator[None]:
        self.execution_context.graphql_document = parse(nested(11))
        yield


async def test_a_document_handed_in_is_still_validated_with_the_limits() -> None:
    cache = cache_for()
    schema = schema_with(cache, HandsInADocument)
    error = assert_refused(await schema.execute("{ item { id } }"), QUERY_TOO_COMPLEX)
    assert (error.extensions or {}).get("actual") == 11
    assert (cache.hits, cache.misses) == (0, 0)


# --- Cost with the request's variables --------------------------------------------------


def only_operation(query: str) -> tuple[Any, OperationDefinitionNode]:
    document = parse(query)
    [operation] = operations(document)
    return document, operation


def test_the_cost_of_an_operation_counts_its_variables_values() -> None:
    document, operation = only_operation(
        "query ($n: Int, $m: Int = 100) "
        "{ items(first: $n) { children(first: $m) { child { id } } } }"
    )
    assert operation_cost(PLAIN._schema, document, operation, 100, {"n": 100, "m": 100}) == (
        1 + 100 * (1 + 100 * 1)
    )
    assert operation_cost(PLAIN._schema, document, operation, 100, {"n": 2, "m": 3}) == 1 + 2 * 4
    # null, or no value at all, leaves the argument's own default (or the default list size).
    assert operation_cost(PLAIN._schema, document, operation, 100, {"n": None, "m": 3}) == (
        1 + 100 * 4
    )


def test_the_cost_of_variables_goes_through_fragments() -> None:
    document, operation = only_operation(
        "query ($n: Int!) { item { ...P } } fragment P on Item { page(first: $n) { child { id } } }"
    )
    assert operation_cost(PLAIN._schema, document, operation, 100, {"n": 7}) == 1 + (1 + 7 * 1)


def test_a_document_cheap_by_its_defaults_is_refused_for_its_variables() -> None:
    cache = cache_for()
    # `page` declares first = 10: by its defaults this costs 1 + 1 + 10 * (1 + 10 * 1).
    query = "query ($n: Int!) { item { page(first: $n) { page(first: $n) { child { id } } } } }"
    prepared = cache.prepare(query)
    assert prepared.errors == ()
    assert prepared.document is not None
    cheap = cache.check_operation(prepared.document, None, {"n": 10})
    assert cheap.errors == ()
    assert cheap.variables == {"n": 10}
    dear = cache.check_operation(prepared.document, None, {"n": 100})
    [error] = dear.errors
    assert error.extensions == {
        "code": QUERY_TOO_COMPLEX,
        "limit": "cost",
        "max": 5000,
        "actual": 1 + 1 + 100 * (1 + 100 * 1),
    }


def test_variables_that_do_not_coerce_are_bad_user_input() -> None:
    cache = cache_for()
    prepared = cache.prepare("query ($n: Int!) { items(first: $n) { id } }")
    assert prepared.document is not None
    for variables in ({"n": "many"}, {}, {"n": [[[1]]]}):
        checked = cache.check_operation(prepared.document, None, variables)
        assert checked.errors
        assert {code_of(error) for error in checked.errors} == {"BAD_USER_INPUT"}


def test_an_operation_that_cannot_be_selected_is_bad_user_input() -> None:
    cache = cache_for()
    prepared = cache.prepare("query A { item { id } } query B { items { id } }")
    assert prepared.document is not None
    for name in (None, "C"):
        [error] = cache.check_operation(prepared.document, name, None).errors
        assert code_of(error) == "BAD_USER_INPUT"
    assert cache.check_operation(prepared.document, "B", None).errors == ()


async def test_execute_refuses_an_operation_over_the_cost_limit_by_its_variables() -> None:
    cache = cache_for()
    query = "query ($n: Int!) { item { page(first: $n) { page(first: $n) { child { id } } } } }"
    schema = schema_with(cache)
    cheap = await schema.execute(query, variable_values={"n": 2})
    assert cheap.errors is None
    CALLS.clear()
    error = assert_refused(
        await schema.execute(query, variable_values={"n": 100}), QUERY_TOO_COMPLEX
    )
    assert (error.extensions or {}).get("limit") == "cost"


async def test_a_subscription_over_the_cost_limit_by_its_variables_is_refused() -> None:
    cache = cache_for()
    query = (
        "subscription ($n: Int!) { ticks { page(first: $n) { page(first: $n) { child { id } } } } }"
    )
    result = await first_result_with(schema_with(cache), query, {"n": 1000})
    assert_refused(result, QUERY_TOO_COMPLEX)


async def first_result_with(
    schema: strawberry.Schema, query: str, variables: dict[str, Any]
) -> ExecutionResult:
    results = await schema.subscribe(query, variable_values=variables)
    if isinstance(results, ExecutionResult):
        return results
    async for result in results:
        assert isinstance(result, ExecutionResult)
        return result
    raise AssertionError("the stream ended without a result")


# --- Validation too costly to finish ----------------------------------------------------


def test_fields_too_many_to_compare_are_refused_as_such_not_as_depth() -> None:
    roomy = QueryLimits(**{**LIMITS.__dict__, "max_tokens": 100_000})
    prepared = cache_for(roomy).prepare("{ item { " + "id " * 900 + "} }")
    error = the_error(prepared)
    extensions = error.extensions or {}
    assert extensions.get("code") == QUERY_TOO_COMPLEX
    assert extensions.get("limit") == "fieldComparisons", extensions
    assert error.message != "Validation aborted."


# --- The cache's size, in bytes ---------------------------------------------------------


def test_the_cache_holds_at_most_its_byte_budget() -> None:
    budget = 400_000
    cache = cache_for(QueryLimits(**{**LIMITS.__dict__, "cache_bytes": budget}), maxsize=10_000)
    for n in range(60):
        cache.prepare(f"{{ items(first: {n}) {{ id }} }} # {'x' * 20_000}")
    assert 0 < cache.bytes <= budget
    assert 0 < len(cache) < 60


def test_a_document_bigger_than_the_budget_is_prepared_but_not_kept() -> None:
    cache = cache_for(QueryLimits(**{**LIMITS.__dict__, "cache_bytes": 10_000}))
    query = f"{{ item {{ id }} }} # {'x' * 50_000}"
    assert cache.prepare(query).errors == ()
    assert (len(cache), cache.bytes) == (0, 0)


def test_failures_cannot_push_documents_that_work_out_of_the_cache() -> None:
    cache = cache_for(maxsize=100)
    good = cache.prepare("{ item { id } }")
    for n in range(300):
        cache.prepare(f"{{ nope{n} }} # {'x' * 5_000}")
    assert cache.prepare("{ item { id } }") is good
