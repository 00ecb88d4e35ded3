"""A small GraphQL-over-HTTP client for tests that need status codes and headers.

Tests that only need data use `gql` (a real GraphQL client); this one shows what a client
sees on the wire: status, headers and the raw JSON body.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery"


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = self.body.get("errors") or []
        return errors

    @property
    def codes(self) -> list[str]:
        return [str((e.get("extensions") or {}).get("code")) for e in self.errors]

    def ok(self) -> Any:
        assert self.status == 200, (self.status, self.body)
        assert not self.errors, self.body
        return self.data


async def post(
    http_url: str,
    query: str | None,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    body: dict[str, Any] = {}
    if query is not None:
        body["query"] = query
    if variables is not None:
        body["variables"] = variables
    if extensions is not None:
        body["extensions"] = extensions
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{http_url}/graphql", json=body, headers=all_headers)
    return Reply(response.status_code, response.json(), response.headers)


REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    accessToken refreshToken expiresIn
    user { id username displayName emailVerified createdAt }
  }
}
"""

LOGIN = """
mutation Login($input: LoginInput!) {
  login(input: $input) { accessToken refreshToken expiresIn user { id username } }
}
"""


@dataclass
class Account:
    id: str
    username: str
    email: str
    password: str
    access_token: str
    refresh_token: str


def unique_name(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def register(http_url: str, prefix: str = "u", password: str = PASSWORD) -> Account:
    username = unique_name(prefix)
    email = f"{username}@example.com"
    reply = await post(
        http_url,
        REGISTER,
        {"input": {"email": email, "username": username, "password": password}},
    )
    payload = reply.ok()["register"]
    return Account(
        id=payload["user"]["id"],
        username=username,
        email=email,
        password=password,
        access_token=payload["accessToken"],
        refresh_token=payload["refreshToken"],
    )
