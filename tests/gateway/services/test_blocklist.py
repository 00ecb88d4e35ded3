"""The blocklist's matching: whole words, domains and their subdomains, any case."""

from __future__ import annotations

from gateway.services.blocklist import Blocklist


def test_words_match_whole_words_in_any_case() -> None:
    blocklist = Blocklist.of(" Spam, scam ,", None)
    assert blocklist.words == ("spam", "scam")
    assert blocklist.match("Buy SPAM!") == "spam"
    assert blocklist.match("a scam.") == "scam"
    assert blocklist.match("spammer and scampi") is None


def test_domains_match_links_to_them_and_their_subdomains() -> None:
    blocklist = Blocklist.of(None, "bad.example")
    assert blocklist.match("see https://www.bad.example/x") == "bad.example"
    assert blocklist.match("BAD.EXAMPLE") == "bad.example"
    assert blocklist.match("notbad.example and bad.examples") is None


def test_an_empty_blocklist_matches_nothing() -> None:
    assert Blocklist().match("anything at all") is None
    assert Blocklist.of("", " , ").match("anything") is None
