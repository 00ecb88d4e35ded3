"""Online features in Redis: the layout, the updates the consumer makes, and the lookup.

Layout (one Redis, not Redis Cluster: the lookup script reads keys it derives itself):

* `nova:f:p:<post>` hash — `a` author id, `c` created (epoch s), `n` text length, and
  decayed counters `likes`, `comments`, `shares`, `clicks`, each with `<name>@`, the time
  its value was last brought up to date. Expires `feature_post_ttl_s` after its last update.
* `nova:f:a:<author>` hash — `posts` written and `eng` engagements received (plain counts).
* `nova:f:x:<viewer>` hash — affinity per author (`<author>` value, `<author>@` time): the
  viewer's likes and comments on that author's posts, decayed.
* `nova:f:fo:<user>` set — whom the user follows (follow and mutual-follow features).

Decay: a counter's value v at time t is worth v·2^(-(now - t)/half_life) at `now`. Every
update and every read applies it, so old engagement fades without a sweeper.

`lookup` returns the (viewer, posts) matrix in `ranking.schema` column order from one Lua
script call — one round trip for any number of posts — with schema defaults where Redis
has nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from ranking.schema import DEFAULTS, DTYPE, NAMES
from storage.errors import classify

POST = "nova:f:p:"
AUTHOR = "nova:f:a:"
AFFINITY = "nova:f:x:"
FOLLOWS = "nova:f:fo:"

DECAYED = ("likes", "comments", "shares", "clicks")

# KEYS[1] hash; ARGV: field, delta, now (epoch s), half-life (s), ttl (s; 0 keeps none).
_BUMP = """
local field, delta = ARGV[1], tonumber(ARGV[2])
local now, half_life, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local values = redis.call('HMGET', KEYS[1], field, field .. '@')
local value, at = tonumber(values[1]) or 0, tonumber(values[2]) or now
if now > at then value = value * math.pow(2, -(now - at) / half_life) else now = at end
value = math.max(0, value + delta)
redis.call('HSET', KEYS[1], field, tostring(value), field .. '@', tostring(now))
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return tostring(value)
"""

# ARGV: viewer, now, half-life, then the defaults in schema order, then the post ids.
# Returns, per post, the schema's columns as strings (a float each).
_LOOKUP = """
local viewer, now, half_life = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local width = %(width)d
local defaults = {}
for i = 1, width do defaults[i] = ARGV[3 + i] end
local function decayed(value, at)
  value = tonumber(value)
  if not value then return 0 end
  at = tonumber(at) or now
  if now > at then return value * math.pow(2, -(now - at) / half_life) end
  return value
end
local follows_key, affinity_key = 'nova:f:fo:' .. viewer, 'nova:f:x:' .. viewer
local out, n = {}, 0
for i = 4 + width, #ARGV do
  local p = redis.call('HMGET', 'nova:f:p:' .. ARGV[i], 'a', 'c', 'n',
    'likes', 'likes@', 'comments', 'comments@', 'shares', 'shares@', 'clicks', 'clicks@')
  local row = {}
  for k = 1, width do row[k] = defaults[k] end
  if p[2] then row[1] = tostring(math.max(0, (now - tonumber(p[2])) / 3600)) end
  if p[3] then row[2] = p[3] end
  row[3] = tostring(decayed(p[4], p[5]))
  row[4] = tostring(decayed(p[6], p[7]))
  row[5] = tostring(decayed(p[8], p[9]))
  row[6] = tostring(decayed(p[10], p[11]))
  local author = p[1]
  if author then
    local a = redis.call('HMGET', 'nova:f:a:' .. author, 'posts', 'eng')
    local posts = tonumber(a[1]) or 0
    if posts > 0 then row[7] = tostring((tonumber(a[2]) or 0) / posts) end
    local x = redis.call('HMGET', affinity_key, author, author .. '@')
    row[8] = tostring(decayed(x[1], x[2]))
    local follows = redis.call('SISMEMBER', follows_key, author)
    row[9] = tostring(follows)
    if follows == 1 then
      row[10] = tostring(redis.call('SISMEMBER', 'nova:f:fo:' .. author, viewer))
    else
      row[10] = '0'
    end
  end
  for k = 1, width do n = n + 1; out[n] = row[k] end
end
return out
"""

_EXPECTED = (
    "post_age_hours",
    "post_text_length",
    "post_likes",
    "post_comments",
    "post_shares",
    "post_clicks",
    "author_engagement_rate",
    "viewer_author_affinity",
    "viewer_follows_author",
    "mutual_follow",
)
# The script fills columns by position: it must follow the schema exactly.
assert NAMES == _EXPECTED, "ranking.features._LOOKUP must follow ranking.schema.FEATURES"

LOOKUP_SCRIPT = _LOOKUP % {"width": len(NAMES)}


def bump(
    pipe: Pipeline, key: str, field: str, delta: float, *, at: float, half_life_s: float, ttl_s: int
) -> None:
    """Queue a decayed-counter update (an atomic script call) on `pipe`."""
    pipe.eval(_BUMP, 1, key, field, delta, at, half_life_s, ttl_s)


class FeatureLookup:
    """Reads feature matrices. One per process; `Script` keeps the call an EVALSHA."""

    def __init__(self, redis: aioredis.Redis, *, half_life_s: float) -> None:
        self._redis = redis
        self._half_life_s = half_life_s
        self._script = redis.register_script(LOOKUP_SCRIPT)
        self._defaults = [repr(float(d)) for d in DEFAULTS]

    async def matrix(
        self, viewer: uuid.UUID | str, posts: Sequence[uuid.UUID | str], *, now: float | None = None
    ) -> np.ndarray:
        """A float32 [len(posts), len(NAMES)] matrix; defaults where Redis has nothing."""
        if not posts:
            return np.zeros((0, len(NAMES)), dtype=DTYPE)
        moment = time.time() if now is None else now
        args = [str(viewer), repr(moment), repr(self._half_life_s), *self._defaults]
        args.extend(str(p) for p in posts)
        try:
            reply = await self._script(keys=[], args=args)
        except Exception as exc:
            raise classify(exc, "redis") from exc
        values = np.array(reply, dtype="S32").astype(DTYPE)
        return values.reshape(len(posts), len(NAMES))
