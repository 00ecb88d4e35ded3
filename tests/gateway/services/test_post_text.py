"""Tags and mentions pulled out of post text, and the text rules (pure functions)."""

from __future__ import annotations

import pytest

from gateway.services.posts import MAX_POST_TEXT, check_text, extract_mentions, extract_tags
from gateway.services.search import decode_rank_cursor, encode_rank_cursor
from storage.errors import InvalidInput


def test_tags_are_lowercased_deduplicated_and_in_order() -> None:
    assert extract_tags("#Rust and #rust, then #go_lang! #") == ["rust", "go_lang"]
    assert extract_tags("no tags, an a#b in a word, or ##double") == []


def test_mentions_are_usernames_lowercased_and_deduplicated() -> None:
    assert extract_mentions("hi @Alice_1 and @bob, @ALICE_1 again") == ["alice_1", "bob"]
    assert extract_mentions("mail me at x@example.com, or @ab (too short)") == []


def test_text_must_be_non_blank_and_within_the_limit() -> None:
    assert check_text("x" * MAX_POST_TEXT, limit=MAX_POST_TEXT, what="text")
    for bad in ("", "   ", "x" * (MAX_POST_TEXT + 1)):
        with pytest.raises(InvalidInput):
            check_text(bad, limit=MAX_POST_TEXT, what="text")
    assert check_text("", limit=10, what="text", allow_empty=True) == ""


def test_search_cursors_round_trip_and_refuse_garbage() -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    when, post = datetime.now(UTC), uuid4()
    assert decode_rank_cursor(encode_rank_cursor(0.1, when, post)) == (0.1, when, post)
    with pytest.raises(InvalidInput):
        decode_rank_cursor("not-a-cursor")
