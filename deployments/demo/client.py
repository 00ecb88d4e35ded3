"""A GraphQL-over-HTTP client that keeps to Nova's rate limits: raw POSTs with httpx, a few
requests in flight, mutations and queries paced under the per-IP budgets, and a wait of
`retryAfter` whenever the server says a budget is spent.

Every seeded request comes from one address, so the per-IP budgets bind first (20
mutations/s on a default stack): pacing below them keeps the seed from spending them in
bursts and being told to wait, and leaves a little for whoever else uses the stack from
this machine. A refusal all the same (RATE_LIMITED, HTTP 429, or 503 from a busy replica)
holds every request for the time the server names, since the spent bucket is shared.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from deployments.demo.operations import LOGIN, REFRESH

MAX_ATTEMPTS = 8
PACE_SHARE = 0.9  # of each per-IP budget the seed takes
BURST_SHARE = 0.25  # of each per-IP burst it may spend at once


class SeedError(Exception):
    """The seed cannot go on; the message says why."""


class GraphQLError(SeedError):
    """An operation answered with errors that waiting would not fix."""

    def __init__(self, operation: str, errors: list[dict[str, Any]]) -> None:
        self.codes = [str((e.get("extensions") or {}).get("code")) for e in errors]
        messages = "; ".join(
            f"{c}: {e.get('message')}" for c, e in zip(self.codes, errors, strict=True)
        )
        super().__init__(f"{operation}: {messages}")


@dataclass
class Bucket:
    """A token bucket on this side of the wire, refilled at `rate_per_s` up to `capacity`."""

    rate_per_s: float
    capacity: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def wait_s(self) -> float:
        """Take a token if one is there (0.0), else how long until one is."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


@dataclass(frozen=True)
class Budgets:
    """The target's per-IP budgets (`rate_ip_*` settings)."""

    mutations_per_s: float
    mutations_burst: int
    queries_per_s: float
    queries_burst: int


class Pacer:
    """Admits requests under the budgets; `hold` stops everyone for a while."""

    def __init__(self, budgets: Budgets) -> None:
        self._buckets = {
            True: Bucket(
                budgets.mutations_per_s * PACE_SHARE,
                max(1.0, budgets.mutations_burst * BURST_SHARE),
            ),
            False: Bucket(
                budgets.queries_per_s * PACE_SHARE, max(1.0, budgets.queries_burst * BURST_SHARE)
            ),
        }
        self._lock = asyncio.Lock()
        self._held_until = 0.0

    async def admit(self, mutation: bool) -> None:
        async with self._lock:  # first come, first served
            while True:
                held = max(0.0, self._held_until - time.monotonic())
                wait = held or self._buckets[mutation].wait_s()
                if wait <= 0:
                    return
                await asyncio.sleep(wait)

    def hold(self, seconds: float) -> None:
        self._held_until = max(self._held_until, time.monotonic() + seconds)


@dataclass
class Stats:
    requests: int = 0
    rate_limited: int = 0
    unavailable: int = 0
    waited_s: float = 0.0


@dataclass
class Account:
    """A signed-in demo user: tokens, refreshed when the access token expires."""

    login: str
    password: str
    user_id: str = ""
    access_token: str = ""
    refresh_token: str = ""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class Client:
    """`call` one operation as `account` (or anonymously); waits and retries what waiting
    fixes, raises `GraphQLError` for the rest."""

    def __init__(
        self,
        url: str,
        budgets: Budgets,
        *,
        concurrency: int,
        timeout_s: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/graphql"
        self._http = httpx.AsyncClient(
            timeout=timeout_s, headers={"accept": "application/json"}, transport=transport
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._pacer = Pacer(budgets)
        self.stats = Stats()

    async def close(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        account: Account | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """The operation's `data`. `idempotent` allows a retry after an answer that may
        have come after the work was done (a lost connection, UNAVAILABLE mid-way)."""
        mutation = document.lstrip().startswith("mutation")
        name = document.split("(")[0].split("{")[0].strip()
        refreshed, last = False, ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                status, body, retry_after = await self._post(document, variables, account, mutation)
            except httpx.RequestError as exc:
                if not idempotent or attempt == MAX_ATTEMPTS:
                    raise SeedError(f"{name}: {type(exc).__name__}: {exc}") from exc
                await self._backoff(attempt, None)
                continue
            errors: list[dict[str, Any]] = body.get("errors") or []
            codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
            last = f"HTTP {status} {', '.join(sorted(codes))}".strip()
            if status == 429 or "RATE_LIMITED" in codes:
                self.stats.rate_limited += 1
                await self._backoff(attempt, retry_after or _retry_after(errors) or 1.0)
                continue
            if status == 503 or (idempotent and "UNAVAILABLE" in codes):
                self.stats.unavailable += 1
                await self._backoff(attempt, retry_after or 1.0)
                continue
            if (status == 401 or "UNAUTHENTICATED" in codes) and account and not refreshed:
                await self.renew(account)
                refreshed = True
                continue
            if errors or status != 200:
                raise GraphQLError(name, errors or [{"message": f"HTTP {status}: {body}"}])
            data: dict[str, Any] = body["data"]
            return data
        raise SeedError(
            f"{name}: still refused after {MAX_ATTEMPTS} attempts (last: {last}): the stack is "
            "overloaded, or its budgets are spent by something else on this machine"
        )

    async def _post(
        self,
        document: str,
        variables: dict[str, Any] | None,
        account: Account | None,
        mutation: bool,
    ) -> tuple[int, dict[str, Any], float | None]:
        headers = {"authorization": f"Bearer {account.access_token}"} if account else {}
        await self._pacer.admit(mutation)
        async with self._slots:
            self.stats.requests += 1
            response = await self._http.post(
                self._endpoint,
                json={"query": document, "variables": variables or {}},
                headers=headers,
            )
        try:
            body = response.json()
        except ValueError:
            body = {"errors": [{"message": response.text[:200]}]}
        header = response.headers.get("retry-after")
        retry_after = float(header) if header and header.replace(".", "", 1).isdigit() else None
        return response.status_code, body if isinstance(body, dict) else {}, retry_after

    async def _backoff(self, attempt: int, told_s: float | None) -> None:
        """Wait as told (every request waits: the budget is shared), else exponentially."""
        wait = told_s if told_s is not None else min(8.0, 0.25 * 2**attempt)
        wait += random.uniform(0, 0.25)  # jitter, so waiting requests do not return at once
        if told_s is not None:
            self._pacer.hold(wait)
        self.stats.waited_s += wait
        await asyncio.sleep(wait)

    async def renew(self, account: Account) -> None:
        """New tokens for `account`: by its refresh token, else by signing in again."""
        stale = account.access_token
        async with account.lock:
            if account.access_token != stale:  # another task renewed it meanwhile
                return
            try:
                data = await self.call(REFRESH, {"token": account.refresh_token})
                payload = data["refreshToken"]
            except GraphQLError:
                data = await self.call(
                    LOGIN, {"input": {"login": account.login, "password": account.password}}
                )
                payload = data["login"]
            sign_in(account, payload)


def sign_in(account: Account, payload: dict[str, Any]) -> None:
    """Keep the tokens an `AuthPayload` carries."""
    account.user_id = payload["user"]["id"]
    account.access_token = payload["accessToken"]
    account.refresh_token = payload["refreshToken"]


def _retry_after(errors: list[dict[str, Any]]) -> float | None:
    for error in errors:
        value = (error.get("extensions") or {}).get("retryAfter")
        if isinstance(value, int | float):
            return float(value)
    return None
