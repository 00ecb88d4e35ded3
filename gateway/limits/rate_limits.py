"""Distributed rate limits: token buckets in Redis, one atomic script per decision.

Every gateway replica shares the buckets, so a client cannot multiply its budget by
spreading requests over replicas. The clock is Redis's own (`TIME`), never a replica's:
replicas' clocks drift, and a bucket read with one clock and written with another would
mint or lose tokens. Refill, take and write happen in one script, so concurrent requests
cannot both spend the last token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.settings import GatewaySettings
from storage.errors import classify

# Charges buckets in one round trip. KEYS: the buckets. ARGV[1]: "1" for debits (requests
# already admitted), "0" for takes; then rate per second, burst and cost for each bucket, in
# KEYS' order. Returns {allowed (0/1), whole tokens left, milliseconds until `cost` tokens
# are there} for each bucket, flattened.
# `take` handles one bucket (a hash: `tokens`, `at` = Redis time in microseconds): refill,
# then take `cost` tokens if they are there; a debit takes them anyway (the bucket goes into
# debt, at most one burst deep, and refuses until it has refilled). Times are integer
# microseconds: exact in a double, and Redis turns numbers passed to redis.call into
# strings with full precision ("%.17g").
_CHARGE = """
local function take(key, rate, burst, cost, debit, now)
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = burst
    at = now
  end
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000000)
  local allowed = 0
  local wait_ms = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  else
    wait_ms = math.ceil((cost - tokens) * 1000 / rate)
    if debit then
      tokens = math.max(-burst, tokens - cost)
    end
  end
  redis.call('HSET', key, 'tokens', tokens, 'at', now)
  -- Once the bucket would be full again, a missing key means the same thing: let it go.
  local full_ms = math.max(1, math.ceil((burst - tokens) * 1000 / rate))
  redis.call('PEXPIRE', key, full_ms)
  return {allowed, math.floor(tokens), wait_ms}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local debit = ARGV[1] == '1'
local out = {}
for i, key in ipairs(KEYS) do
  local j = (i - 1) * 3
  local rate, burst, cost = tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]), tonumber(ARGV[j + 4])
  local r = take(key, rate, burst, cost, debit, now)
  out[j + 1], out[j + 2], out[j + 3] = r[1], r[2], r[3]
end
return out
"""


@dataclass(frozen=True)
class Budget:
    """A named token bucket shape: `burst` requests at once, `rate_per_s` sustained."""

    name: str
    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        # A ':' in the name would let two (budget, subject) pairs share one key.
        if not self.name or ":" in self.name:
            raise ValueError(f"budget name {self.name!r} must be non-empty and without ':'")
        if not (math.isfinite(self.rate_per_s) and self.rate_per_s > 0):
            raise ValueError(f"budget {self.name}: rate_per_s must be positive and finite")
        if self.burst < 1:
            raise ValueError(f"budget {self.name}: burst must be at least 1")


@dataclass(frozen=True)
class Decision:
    """The outcome of one `take`; `retry_after_s` is 0 when allowed."""

    allowed: bool
    remaining: int
    retry_after_s: float


@dataclass(frozen=True)
class Budgets:
    """The gateway's budgets, built once from `GatewaySettings`."""

    user_queries: Budget
    user_mutations: Budget
    ip_queries: Budget
    ip_mutations: Budget
    login: Budget


def budgets(settings: GatewaySettings) -> Budgets:
    """The budgets configured by `NOVA_RATE_*`."""
    s = settings
    return Budgets(
        user_queries=Budget("user-queries", s.rate_user_queries_per_s, s.rate_user_queries_burst),
        user_mutations=Budget(
            "user-mutations", s.rate_user_mutations_per_s, s.rate_user_mutations_burst
        ),
        ip_queries=Budget("ip-queries", s.rate_ip_queries_per_s, s.rate_ip_queries_burst),
        ip_mutations=Budget("ip-mutations", s.rate_ip_mutations_per_s, s.rate_ip_mutations_burst),
        login=Budget("login", s.rate_login_per_s, s.rate_login_burst),
    )


class RateLimiter:
    """Token buckets keyed `{prefix}:{budget}:{subject}`, shared by every replica.

    Redis errors raise `Unavailable`; whether to fail open is the caller's decision.
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "nova:rl") -> None:
        self._redis = redis
        self._prefix = prefix
        self._charge_script = redis.register_script(_CHARGE)

    def key(self, budget: Budget, subject: str) -> str:
        return f"{self._prefix}:{budget.name}:{subject}"

    async def take(self, budget: Budget, subject: str, cost: int = 1) -> Decision:
        """Take `cost` tokens if the bucket has them; a denied request takes nothing."""
        if cost > budget.burst:
            # It could never be allowed: a caller bug, not a client to throttle.
            raise ValueError(f"cost {cost} exceeds the burst of {budget.name} ({budget.burst})")
        [decision] = await self._charge([(budget, subject, cost)], debit=False)
        return decision

    async def debit_many(self, debits: Sequence[tuple[Budget, str, int]]) -> list[Decision]:
        """Take each (budget, subject, cost) for requests already admitted, into debt if need
        be; one round trip for all, so a replica's background charges cost Redis one call
        per batch, not per bucket. A decision's `allowed` says whether its bucket had the
        tokens: False means those requests were admitted past the limit, and the bucket
        refuses until it has refilled the debt. One script over several keys needs them on
        one node (Nova's Redis client is a single-node client)."""
        if not debits:
            return []
        return await self._charge(debits, debit=True)

    async def _charge(
        self, charges: Sequence[tuple[Budget, str, int]], *, debit: bool
    ) -> list[Decision]:
        keys: list[str] = []
        args: list[str | int] = ["1" if debit else "0"]
        for budget, subject, cost in charges:
            if cost < 1:
                raise ValueError(f"cost must be at least 1, got {cost}")
            keys.append(self.key(budget, subject))
            args += [repr(float(budget.rate_per_s)), budget.burst, cost]
        try:
            flat = await self._charge_script(keys=keys, args=args)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        return [_decision(*flat[i : i + 3]) for i in range(0, len(flat), 3)]

    async def reset(self, budget: Budget, subject: str) -> None:
        """Give `subject` a full bucket again (e.g. after a successful login)."""
        try:
            await self._redis.delete(self.key(budget, subject))
        except Exception as exc:
            raise classify(exc, "redis") from exc


def _decision(allowed: int, remaining: int, wait_ms: int) -> Decision:
    if allowed:
        return Decision(allowed=True, remaining=int(remaining), retry_after_s=0.0)
    return Decision(allowed=False, remaining=int(remaining), retry_after_s=int(wait_ms) / 1000)
