"""What a seed made, counted as the server acknowledged it, and the summary printed at the
end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    users_registered: int = 0
    users_reused: int = 0  # accounts a previous seed made, signed in again
    follows: int = 0
    posts: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    rooms: int = 0
    messages: int = 0
    visits: int = 0
    feed_pages: int = 0
    impressions: int = 0
    engaged: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    # Pages by the model version that ranked them ("" for a page served newest first).
    pages_by_version: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        """The summary, a few lines a person reads."""
        minutes, seconds = divmod(round(self.elapsed_s), 60)
        versions = ", ".join(
            f"{v or 'unranked'} {n}" for v, n in sorted(self.pages_by_version.items())
        )
        rate = self.engaged / self.impressions if self.impressions else 0.0
        return [
            f"made in {minutes}:{seconds:02d} with {self.requests} requests "
            f"({self.rate_limited} rate-limited, {self.waited_s:.1f} s waited)",
            f"  users     {self.users_registered} registered, {self.users_reused} reused",
            f"  follows   {self.follows}",
            f"  posts     {self.posts} (+{self.shares} shares)",
            f"  likes     {self.likes}",
            f"  comments  {self.comments}",
            f"  chat      {self.rooms} rooms, {self.messages} messages",
            f"  visits    {self.visits} ({self.feed_pages} feed pages: {versions or 'none'})",
            f"  events    {self.impressions} impressions, {self.engaged} engaged ({rate:.1%}); "
            f"{self.events_accepted} of {self.events_sent} events accepted",
        ]
