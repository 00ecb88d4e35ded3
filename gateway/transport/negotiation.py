"""What a GraphQL-over-HTTP request may be answered in, and how deep its JSON may go.

`media_type` reads `Accept` as RFC 9110 does: each response type takes the quality of
the most specific range that matches it; the highest quality wins, then the more
specific range, then the one listed first, then `application/graphql-response+json`
(GraphQL over HTTP's own type, which `*/*` and a missing `Accept` get, as graphql-http's
audits expect).
"""

from __future__ import annotations

from typing import Any

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_TYPES = (GRAPHQL_RESPONSE, JSON)  # in order of preference on a tie


def weighted(header: str) -> list[tuple[str, float]]:
    """An `Accept`-style header (`Accept`, `Accept-Encoding`) as (lower-cased value,
    quality) pairs in the order given; a missing or unreadable `q` is 1 or 0."""
    ranges = []
    for part in header.split(","):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))
    return ranges


def _specificity(media_range: str, media: str) -> int | None:
    """How specifically `media_range` names `media` (2, 1, 0), or None if it does not."""
    if media_range == media:
        return 2
    if media_range == media.split("/")[0] + "/*":
        return 1
    if media_range == "*/*":
        return 0
    return None


def quality(accept: str | None, media: str) -> float:
    """The quality `accept` gives `media`: that of the most specific range naming it, 0
    when none does (and 1 for a missing `Accept`, which accepts anything)."""
    if accept is None or not accept.strip():
        return 1.0
    matches = [
        (specificity, -position, q)
        for position, (media_range, q) in enumerate(weighted(accept))
        if (specificity := _specificity(media_range, media)) is not None
    ]
    return max(matches)[2] if matches else 0.0


def names(accept: str | None, media: str) -> bool:
    """Whether `accept` names `media` itself, not through a wildcard, with a quality above 0."""
    return any(media_range == media and q > 0 for media_range, q in weighted(accept or ""))


def prefers_html(accept: str | None) -> bool:
    """Whether `accept` (a browser's, typically) ranks `text/html` above both GraphQL
    response types: a page is what it asks for."""
    html = quality(accept, "text/html")
    return html > 0 and all(html > quality(accept, media) for media in _TYPES)


def media_type(accept: str | None) -> str | None:
    """The type to answer in, or None when `accept` allows neither (406)."""
    if accept is None or not accept.strip():
        return GRAPHQL_RESPONSE
    ranges = weighted(accept)
    best: tuple[float, int, int, int] | None = None
    chosen = None
    for preference, media in enumerate(_TYPES):
        matches = [
            (specificity, -position, quality)
            for position, (media_range, quality) in enumerate(ranges)
            if (specificity := _specificity(media_range, media)) is not None
        ]
        if not matches:
            continue
        specificity, position, quality = max(matches)  # the most specific range decides
        rank = (quality, specificity, position, -preference)
        if quality > 0 and (best is None or rank > best):
            best, chosen = rank, media
    return chosen


def json_within(value: Any, max_depth: int) -> bool:
    """Whether `value` (parsed JSON) nests at most `max_depth` objects and lists deep;
    iterative, so any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return False
        stack.extend((child, depth + 1) for child in children)
    return True
