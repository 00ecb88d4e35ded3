"""Online features in Redis: the layout, the updates the consumer makes, and the lookup.

Layout (one Redis, not Redis Cluster: the lookup reads many keys with one MGET):

* `nova:f:post:<post>` string — a fixed 96-byte record: the author id (16 bytes, zeros
  while the post itself is unknown), then little-endian doubles `created` (epoch s),
  `length`, and the decayed counters `likes`, `comments`, `shares`, `clicks`, each followed
  by `<name>@`, the time its value was last brought up to date. Fields are written in
  place (SETRANGE), so a counter may arrive before its post. Expires
  `feature_post_ttl_s` after its last update.
* `nova:f:ap:<author>`, `nova:f:ae:<author>` strings — posts the author wrote and the
  engagements they received (plain counts), one key each so any number of authors is one MGET.
* `nova:f:x:<viewer>` hash — affinity per author (`<author>` value, `<author>@` time): the
  viewer's likes and comments on that author's posts, decayed.
* `nova:f:fo:<user>` set — whom the user follows; `nova:f:fi:<user>` set — who follows the
  user (follow and mutual-follow features without one command per author).
* `nova:f:once:<counter>:<post>:<person>` string — when that person last counted towards
  that counter of the post, for counters that take one count per person per window
  (clicks: a client's word, `bump_post_once`). Expires after the window.

Decay: a counter's value v at time t is worth v·2^(-(now - t)/half_life) at `now`. Every
update and every read applies it, so old engagement fades without a sweeper.

`FeatureLookup.matrix` answers (viewer, posts, their authors) with one pipeline of plain
commands, whatever the number of posts: an MGET of the post records, an MGET of the
authors' counts, an HMGET of affinities and two SMISMEMBERs. Without the authors it takes
two round trips: the records first, which name the authors. No script runs on the read path:
Redis serves it in C, and the decoding and the decay are done in numpy. (An earlier Lua
lookup cost Redis about 8 ms of its single thread per 500 posts.)
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from ranking.schema import DEFAULTS, DTYPE, NAMES
from storage.errors import classify

POST = "nova:f:post:"
AUTHOR_POSTS = "nova:f:ap:"
AUTHOR_ENGAGEMENTS = "nova:f:ae:"
AFFINITY = "nova:f:x:"
FOLLOWS = "nova:f:fo:"
FOLLOWERS = "nova:f:fi:"
ONCE = "nova:f:once:"
# The keys named by a user id alone.
USER_KEYS = (AUTHOR_POSTS, AUTHOR_ENGAGEMENTS, AFFINITY, FOLLOWS, FOLLOWERS)

RECORD_FIELDS = (
    "created", "length", "likes", "likes@", "comments", "comments@", "shares", "shares@",
    "clicks", "clicks@",
)  # fmt: skip
AUTHOR_BYTES = 16
RECORD_SIZE = AUTHOR_BYTES + 8 * len(RECORD_FIELDS)
_NO_AUTHOR = bytes(AUTHOR_BYTES)
_EMPTY_RECORD = bytes(RECORD_SIZE)


def record_offset(field: str) -> int:
    """Where `field` (a double) starts in a post record."""
    return AUTHOR_BYTES + 8 * RECORD_FIELDS.index(field)


def post_identity(author: uuid.UUID | str, created: float, length: int) -> bytes:
    """The start of a post record: author, creation time, text length."""
    author_id = author if isinstance(author, uuid.UUID) else uuid.UUID(author)
    return author_id.bytes + struct.pack("<dd", created, float(length))


# KEYS[1] hash; ARGV: field, delta, now (epoch s), half-life (s), ttl (s; 0 keeps none).
_BUMP_FIELD = """
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

# KEYS[1] post record; ARGV: byte offset of the (value, time) pair, delta, now, half-life,
# ttl. Bytes never written read as zeros: value 0 at time 0, which is the same as nothing.
_BUMP_RECORD = """
local offset, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, half_life, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local raw = redis.call('GETRANGE', KEYS[1], offset, offset + 15)
local value, at = 0, now
if #raw == 16 then value, at = struct.unpack('<dd', raw) end
if at == 0 then at = now end
if now > at then value = value * math.pow(2, -(now - at) / half_life) else now = at end
value = math.max(0, value + delta)
redis.call('SETRANGE', KEYS[1], offset, struct.pack('<dd', value, now))
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return tostring(value)
"""

# `_BUMP_RECORD` once per person and window: KEYS[2] holds when the person last counted
# (event time); ARGV[6] is the window (s). Nothing changes when the person counted within
# the window already, either side of this event (a backlog may come out of order).
_BUMP_RECORD_ONCE = (
    """
local moment, window = tonumber(ARGV[3]), tonumber(ARGV[6])
local last = tonumber(redis.call('GET', KEYS[2]))
if last and math.abs(moment - last) < window then return nil end
redis.call('SET', KEYS[2], tostring(moment), 'EX', math.max(1, math.ceil(window)))
"""
    + _BUMP_RECORD
)

RAW_COLUMNS = (
    *RECORD_FIELDS, "author_posts", "author_engagements", "affinity", "affinity@",
    "follows", "mutual",
)  # fmt: skip
_AUTHOR_COLUMNS = len(RAW_COLUMNS) - len(RECORD_FIELDS)
_NOBODY = np.array([np.nan, np.nan, np.nan, np.nan, 0.0, 0.0])  # a post whose author is unknown

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
    """Queue a decayed-counter update of a hash field (an atomic script call) on `pipe`."""
    pipe.eval(_BUMP_FIELD, 1, key, field, delta, at, half_life_s, ttl_s)


def bump_post(
    pipe: Pipeline,
    post: str,
    counter: str,
    delta: float,
    *,
    at: float,
    half_life_s: float,
    ttl_s: int,
) -> None:
    """Queue a decayed-counter update of a post record (an atomic script call) on `pipe`."""
    pipe.eval(_BUMP_RECORD, 1, POST + post, record_offset(counter), delta, at, half_life_s, ttl_s)


def bump_post_once(
    pipe: Pipeline,
    post: str,
    counter: str,
    person: str,
    delta: float,
    *,
    at: float,
    half_life_s: float,
    ttl_s: int,
    window_s: float,
) -> None:
    """As `bump_post`, unless `person` counted towards this counter of the post within
    `window_s` of `at` (event time): each person counts once per window."""
    pipe.eval(
        _BUMP_RECORD_ONCE,
        2,
        POST + post,
        f"{ONCE}{counter}:{post}:{person}",
        record_offset(counter),
        delta,
        at,
        half_life_s,
        ttl_s,
        window_s,
    )


def _number(value: bytes | None) -> float:
    return float(value) if value is not None else np.nan


class FeatureLookup:
    """Reads feature matrices: one round trip of plain Redis commands per call when the
    caller names each post's author (the ranked feed's candidates carry it), two when Redis
    must be asked for the authors first."""

    def __init__(self, redis: aioredis.Redis, *, half_life_s: float) -> None:
        self._redis = redis
        self._half_life_s = half_life_s

    async def matrix(
        self,
        viewer: uuid.UUID | str,
        posts: Sequence[uuid.UUID | str],
        *,
        authors: Sequence[uuid.UUID | str] | None = None,
        now: float | None = None,
    ) -> np.ndarray:
        """A float32 [len(posts), len(NAMES)] matrix; defaults where Redis has nothing.

        `authors`, when given, is each post's author, in the order of `posts`: the author
        columns are read in the same pipeline as the post records, and are filled even for
        a post whose own record has not been written yet.
        """
        if authors is not None and len(authors) != len(posts):
            raise ValueError(f"{len(authors)} authors for {len(posts)} posts")
        if not posts:
            return np.zeros((0, len(NAMES)), dtype=DTYPE)
        viewer_id = str(viewer)
        keys = [POST + str(p) for p in posts]
        try:
            if authors is None:
                records = cast(list[bytes | None], await self._redis.mget(keys))
                stored, recorded = _records(records)
                # Each post's author as an index into the distinct authors; -1 when unknown.
                distinct: dict[bytes, int] = {}
                author_of = np.array(
                    [-1 if a is None else distinct.setdefault(a, len(distinct)) for a in recorded],
                    dtype=np.int64,
                )
                names = [str(uuid.UUID(bytes=a)) for a in distinct]
                pipe = self._redis.pipeline(transaction=False)
                _queue_authors(pipe, viewer_id, names)
                by_author = _author_table(await pipe.execute(), len(names))
            else:
                given: dict[str, int] = {}
                author_of = np.array(
                    [given.setdefault(str(a), len(given)) for a in authors], dtype=np.int64
                )
                names = list(given)
                pipe = self._redis.pipeline(transaction=False)
                pipe.mget(keys)
                _queue_authors(pipe, viewer_id, names)
                replies = await pipe.execute()
                stored, recorded = _records(cast(list[bytes | None], replies[0]))
                by_author = _author_table(replies[1:], len(names))
        except Exception as exc:
            raise classify(exc, "redis") from exc
        raw = np.empty((len(posts), len(RAW_COLUMNS)))
        raw[:, : len(RECORD_FIELDS)] = stored[:, AUTHOR_BYTES:].copy().view("<f8")
        unseen = np.array([a is None for a in recorded], dtype=bool)
        raw[unseen, 0:2] = np.nan  # created and length: the post itself was never seen
        raw[:, len(RECORD_FIELDS) :] = np.vstack([by_author, _NOBODY])[author_of]
        moment = time.time() if now is None else now
        return assemble(raw, now=moment, half_life_s=self._half_life_s)


def _records(records: list[bytes | None]) -> tuple[np.ndarray, list[bytes | None]]:
    """Post records → [n, RECORD_SIZE] bytes, and each record's author (None if unknown)."""
    padded = []
    authors: list[bytes | None] = []
    for record in records:
        record = record[:RECORD_SIZE].ljust(RECORD_SIZE, b"\0") if record else _EMPTY_RECORD
        padded.append(record)
        author = record[:AUTHOR_BYTES]
        authors.append(None if author == _NO_AUTHOR else author)
    stored = np.frombuffer(b"".join(padded), dtype=np.uint8).reshape(len(records), RECORD_SIZE)
    return stored, authors


def _queue_authors(pipe: Pipeline, viewer: str, authors: list[str]) -> None:
    """Queue the reads of the author columns for `authors` (none when empty)."""
    if not authors:
        return
    pipe.mget([AUTHOR_POSTS + a for a in authors] + [AUTHOR_ENGAGEMENTS + a for a in authors])
    pipe.hmget(AFFINITY + viewer, [key for a in authors for key in (a, a + "@")])
    pipe.smismember(FOLLOWS + viewer, authors)
    pipe.smismember(FOLLOWERS + viewer, authors)


def _author_table(replies: list[Any], n: int) -> np.ndarray:
    """The replies `_queue_authors` asked for → [n, 6]: posts, engagements, affinity, its
    time, follows, mutual."""
    if n == 0:
        return np.zeros((0, _AUTHOR_COLUMNS))
    counts, affinity, follows, followed_by = replies
    table = np.empty((n, _AUTHOR_COLUMNS))
    table[:, 0] = [_number(v) for v in counts[:n]]
    table[:, 1] = [_number(v) for v in counts[n:]]
    table[:, 2:4] = np.array([_number(v) for v in affinity]).reshape(n, 2)
    table[:, 4] = follows
    table[:, 5] = np.logical_and(follows, followed_by)
    return table
