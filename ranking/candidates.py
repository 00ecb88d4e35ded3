"""Out-of-network candidates for the ranked feed.

In-network candidates are the viewer's home timeline (`gateway.services.feed`). These add posts
the viewer's followees liked recently (a social signal) and posts trending over the last
day, never the viewer's own, never by an author blocked either way, never deleted. Their
queries are `storage.repositories.candidates`' (`CandidateStore`); the ranked feed
(`gateway.services.ranked_feed`) chooses the windows and limits and merges them.
"""

from __future__ import annotations

from storage.repositories.candidates import CandidateStore as CandidateStore
from storage.repositories.candidates import hidden_authors as hidden_authors
from storage.repositories.candidates import liked_by_followees as liked_by_followees
from storage.repositories.candidates import trending as trending
