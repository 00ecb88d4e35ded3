"""`GatewayRuntime.admit`: what must ask Redis (a revocation check while the mirror is out of
sync, charges to buckets near their limit) is sent together, what need not is not waited
for, and a revoked token's error wins over a spent budget's (pure logic: the checks are
stand-ins that record when they run)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import cast

import pytest

from deployments.settings import Settings
from gateway.auth.tokens import AccessClaims
from gateway.errors import RateLimited, Unauthenticated
from gateway.limits.rate_limits import Budget, budgets
from gateway.runtime import GatewayRuntime

CLAIMS = AccessClaims(
    user_id=uuid.uuid4(),
    roles=("user",),
    jti="jti",
    session_id=uuid.uuid4(),
    issued_at=int(time.time()),
    expires_at=int(time.time()) + 900,
)


class Checks:
    """Stands in for the runtime's Redis work: each check takes `delay_s`, then fails
    with the error it was given (or passes)."""

    def __init__(
        self,
        *,
        revoked: bool,
        spent: set[str],
        delay_s: float = 0.05,
        mirror_in_sync: bool = False,
        at_once: frozenset[str] = frozenset(),
    ) -> None:
        self.settings = Settings()
        self.budgets = budgets(self.settings)
        self.revocations = self
        self.buckets = self
        self._revoked = revoked
        self._mirror_in_sync = mirror_in_sync
        self._at_once = at_once
        self.admitted_at_once: list[str] = []
        self._spent = spent
        self._delay_s = delay_s
        self.running = 0
        self.most_at_once = 0
        self.charged: list[str] = []

    async def _work(self) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(self._delay_s)
        self.running -= 1

    def known(self, claims: AccessClaims) -> bool | None:
        return self._revoked if self._mirror_in_sync else None

    def try_admit(self, budget: Budget, subject: str) -> bool:
        if budget.name in self._at_once:
            self.admitted_at_once.append(budget.name)
            return True
        return False

    async def check(self, claims: AccessClaims) -> None:
        await self._work()
        if self._revoked:
            raise Unauthenticated("access token was revoked")

    async def charge(self, budget: Budget, subject: str, cost: int = 1) -> None:
        self.charged.append(budget.name)
        await self._work()
        if budget.name in self._spent:
            raise RateLimited(f"rate limit exceeded ({budget.name})", 1.0)

    async def admit(self, claims: AccessClaims | None, *, mutation: bool = False) -> None:
        runtime = cast(GatewayRuntime, self)
        await GatewayRuntime.admit(runtime, "127.0.0.1", claims, mutation=mutation)

    operation_budgets = GatewayRuntime.operation_budgets


async def test_the_revocation_check_and_both_charges_wait_together() -> None:
    checks = Checks(revoked=False, spent=set())
    await checks.admit(CLAIMS)
    assert checks.most_at_once == 3
    assert checks.charged == ["ip-queries", "user-queries"]


async def test_a_revoked_token_is_refused_as_unauthenticated_even_when_its_budget_is_spent() -> (
    None
):
    checks = Checks(revoked=True, spent={"ip-queries", "user-queries"})
    with pytest.raises(Unauthenticated):
        await checks.admit(CLAIMS)


async def test_a_spent_budget_refuses_a_valid_token() -> None:
    checks = Checks(revoked=False, spent={"user-mutations"})
    with pytest.raises(RateLimited):
        await checks.admit(CLAIMS, mutation=True)
    assert checks.charged == ["ip-mutations", "user-mutations"]


async def test_an_anonymous_operation_is_charged_to_its_ip_only() -> None:
    checks = Checks(revoked=True, spent=set())
    await checks.admit(None)
    assert checks.charged == ["ip-queries"]
    assert checks.most_at_once == 1


BOTH = frozenset({"ip-queries", "user-queries"})
IP = frozenset({"ip-queries"})


async def test_nothing_is_waited_for_when_the_mirror_and_both_buckets_answer() -> None:
    checks = Checks(revoked=False, spent=set(), mirror_in_sync=True, at_once=BOTH)
    await checks.admit(CLAIMS)
    assert checks.most_at_once == 0
    assert checks.admitted_at_once == ["ip-queries", "user-queries"]


async def test_only_the_bucket_near_its_limit_is_waited_for() -> None:
    checks = Checks(
        revoked=False,
        spent={"user-queries"},
        mirror_in_sync=True,
        at_once=IP,
    )
    with pytest.raises(RateLimited):
        await checks.admit(CLAIMS)
    assert checks.charged == ["user-queries"]
    assert checks.admitted_at_once == ["ip-queries"]


async def test_a_token_the_mirror_knows_is_revoked_is_refused_after_its_charges() -> None:
    checks = Checks(revoked=True, spent={"user-queries"}, mirror_in_sync=True, at_once=IP)
    with pytest.raises(Unauthenticated):
        await checks.admit(CLAIMS)
    assert checks.charged == ["user-queries"]  # charged like any other attempt
    assert checks.admitted_at_once == ["ip-queries"]
