"""A document's cost counts the values of its variables: a page size sent as a variable
costs what the same number written in the document costs, over HTTP and WebSocket."""

from __future__ import annotations

import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.support.graphql import post, register

pytestmark = pytest.mark.stack

LITERAL = """
query ($u: ID!) { userPosts(userId: $u, first: 100) { edges { node {
  comments(first: 100) { edges { node { id author { id } } } } } } } }
"""
BY_VARIABLE = """
query ($u: ID!, $n: Int) { userPosts(userId: $u, first: $n) { edges { node {
  comments(first: $n) { edges { node { id author { id } } } } } } } }
"""
COST = 1 + 100 * (1 + 1 + (1 + 100 * 3))  # 30,301


async def test_a_page_size_in_a_variable_costs_what_it_would_written_out(http_url: str) -> None:
    account = await register(http_url)
    literal = await post(http_url, LITERAL, {"u": account.id}, token=account.access_token)
    assert literal.status == 400
    assert literal.errors[0]["extensions"]["actual"] == COST
    variables = {"u": account.id, "n": 100}
    refused = await post(http_url, BY_VARIABLE, variables, token=account.access_token)
    assert refused.status == 400, refused.body
    assert refused.codes == ["QUERY_TOO_COMPLEX"]
    assert refused.errors[0]["extensions"]["limit"] == "cost"
    assert refused.errors[0]["extensions"]["actual"] == COST
    fine = await post(http_url, BY_VARIABLE, {"u": account.id, "n": 5}, token=account.access_token)
    assert fine.ok()["userPosts"]["edges"] == []


async def test_a_page_size_in_a_variable_is_costed_over_websocket(http_url: str) -> None:
    account = await register(http_url)
    transport = WebsocketsTransport(
        url=http_url.replace("http://", "ws://") + "/graphql",
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload={"authorization": f"Bearer {account.access_token}"},
    )
    dear, cheap = gql(BY_VARIABLE), gql(BY_VARIABLE)
    dear.variable_values = {"u": account.id, "n": 100}
    cheap.variable_values = {"u": account.id, "n": 5}
    async with Client(transport=transport) as session:
        with pytest.raises(TransportQueryError) as raised:
            await session.execute(dear)
        fine = await session.execute(cheap)
    assert raised.value.errors is not None
    extensions = raised.value.errors[0]["extensions"]
    assert (extensions["code"], extensions["limit"], extensions["actual"]) == (
        "QUERY_TOO_COMPLEX",
        "cost",
        COST,
    )
    assert fine["userPosts"]["edges"] == []
