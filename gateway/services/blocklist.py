"""The word and link blocklist: a post or comment that matches is held for review.

Words match case-insensitively as whole words (`spam` matches "Spam!" but not "spammer");
a domain matches a link to it or to any of its subdomains (`bad.example` matches
"https://www.bad.example/x" and "bad.example"), not a longer name that ends the same way
("notbad.example").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def _items(raw: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i.strip().lower() for i in (raw or "").split(",") if i.strip()))


@dataclass(frozen=True)
class Blocklist:
    """`Blocklist.of("spam, scam", "bad.example")`; `match(text)` names the first entry
    found, or None."""

    words: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    @classmethod
    def of(cls, words: str | None, domains: str | None) -> Blocklist:
        return cls(_items(words), _items(domains))

    def __post_init__(self) -> None:
        parts = [rf"(?<!\w){re.escape(word)}(?!\w)" for word in self.words]
        parts += [rf"(?<![\w.-])(?:[\w-]+\.)*{re.escape(d)}(?![\w-])" for d in self.domains]
        pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        object.__setattr__(self, "_pattern", pattern)

    def match(self, text: str) -> str | None:
        pattern: re.Pattern[str] | None = getattr(self, "_pattern", None)
        if pattern is None:
            return None
        found = pattern.search(text)
        if found is None:
            return None
        hit = found.group(0).lower()
        for domain in self.domains:
            if hit == domain or hit.endswith("." + domain):
                return domain
        return hit
