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

# ARGV: viewer, then the post ids. Returns one binary string: per post, the stored values
# named by RAW_COLUMNS as little-endian doubles (NaN where none), row after row. No
# formatting and no arithmetic in Lua: decay and ratios are done in numpy, and the reply is
# read with `np.frombuffer`. Author-level values are read once per author.
_LOOKUP = """
local viewer = ARGV[1]
local follows_key, affinity_key = 'nova:f:fo:' .. viewer, 'nova:f:x:' .. viewer
local NAN = 0 / 0
local function num(value) return tonumber(value) or NAN end
local authors = {}
local function author_values(author)
  local known = authors[author]
  if known then return known end
  local a = redis.call('HMGET', 'nova:f:a:' .. author, 'posts', 'eng')
  local x = redis.call('HMGET', affinity_key, author, author .. '@')
  local follows = redis.call('SISMEMBER', follows_key, author)
  local mutual = 0
  if follows == 1 then mutual = redis.call('SISMEMBER', 'nova:f:fo:' .. author, viewer) end
  known = {num(a[1]), num(a[2]), num(x[1]), num(x[2]), follows, mutual}
  authors[author] = known
  return known
end
local nobody = {NAN, NAN, NAN, NAN, 0, 0}
local out = {}
for i = 2, #ARGV do
  local p = redis.call('HMGET', 'nova:f:p:' .. ARGV[i], 'a', 'c', 'n',
    'likes', 'likes@', 'comments', 'comments@', 'shares', 'shares@', 'clicks', 'clicks@')
  local a = nobody
  if p[1] then a = author_values(p[1]) end
  out[#out + 1] = struct.pack('<dddddddddddddddd', num(p[2]), num(p[3]), num(p[4]),
    num(p[5]), num(p[6]), num(p[7]), num(p[8]), num(p[9]), num(p[10]), num(p[11]),
    a[1], a[2], a[3], a[4], a[5], a[6])
end
return table.concat(out)
"""

RAW_COLUMNS = (
    "created", "length", "likes", "likes@", "comments", "comments@", "shares", "shares@",
    "clicks", "clicks@", "author_posts", "author_engagements", "affinity", "affinity@",
    "follows", "mutual",
)  # fmt: skip

# The matrix is assembled by position: the schema's order is part of this module's contract.
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
assert NAMES == _EXPECTED, "ranking.features.assemble must follow ranking.schema.FEATURES"

LOOKUP_SCRIPT = _LOOKUP


def assemble(raw: np.ndarray, *, now: float, half_life_s: float) -> np.ndarray:
    """Stored values ([n, len(RAW_COLUMNS)], NaN where absent) → the schema's matrix."""
    column = {name: raw[:, i] for i, name in enumerate(RAW_COLUMNS)}

    def decayed(name: str) -> np.ndarray:
        value = np.nan_to_num(column[name], nan=0.0)
        at = np.where(np.isnan(column[name + "@"]), now, column[name + "@"])
        result: np.ndarray = value * np.exp2(-np.maximum(now - at, 0.0) / half_life_s)
        return result

    def present(values: np.ndarray, default: float) -> np.ndarray:
        return np.where(np.isnan(values), default, values)

    posts = column["author_posts"]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(posts > 0, np.nan_to_num(column["author_engagements"]) / posts, np.nan)
    out = np.empty((len(raw), len(NAMES)), dtype=DTYPE)
    out[:, 0] = present(np.maximum(now - column["created"], 0.0) / 3600, DEFAULTS[0])
    out[:, 1] = present(column["length"], DEFAULTS[1])
    out[:, 2] = decayed("likes")
    out[:, 3] = decayed("comments")
    out[:, 4] = decayed("shares")
    out[:, 5] = decayed("clicks")
    out[:, 6] = present(rate, DEFAULTS[6])
    out[:, 7] = decayed("affinity")
    out[:, 8] = column["follows"]
    out[:, 9] = column["mutual"]
    return out


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

    async def matrix(
        self, viewer: uuid.UUID | str, posts: Sequence[uuid.UUID | str], *, now: float | None = None
    ) -> np.ndarray:
        """A float32 [len(posts), len(NAMES)] matrix; defaults where Redis has nothing."""
        if not posts:
            return np.zeros((0, len(NAMES)), dtype=DTYPE)
        try:
            reply = await self._script(keys=[], args=[str(viewer), *(str(p) for p in posts)])
        except Exception as exc:
            raise classify(exc, "redis") from exc
        raw = np.frombuffer(reply, dtype="<f8").reshape(len(posts), len(RAW_COLUMNS))
        moment = time.time() if now is None else now
        return assemble(raw, now=moment, half_life_s=self._half_life_s)
