"""Whether a stack has people on it: accounts a demo seed did not make.

A seed must not pour thousands of synthetic posts and likes into the feeds, notifications
and training data of real people, so it refuses such a stack unless forced. Seeded accounts
are those whose email is at the reserved `EMAIL_DOMAIN`.

Storage has no census of accounts, and this reads through existing repositories only:
`SearchStore.people` with an empty query matches every username (its prefix test is
`LIKE '%'`), newest first, leaving out suspended accounts; the gateway refuses an empty
search, the store does not. The stack test of the seed checks that an account made by
another test is found.
"""

from __future__ import annotations

import uuid

from deployments.demo.plan import EMAIL_DOMAIN
from storage.db import Database
from storage.repositories.search import SearchStore
from storage.repositories.users import UserStore

CHUNK = 1_000
MAX_ACCOUNTS = 1_000_000
SHOWN = 3


def is_demo(email: str) -> bool:
    return email.lower().endswith("@" + EMAIL_DOMAIN)


async def real_accounts(db: Database) -> list[str]:
    """Usernames of a few accounts a seed did not make (none on a fresh or demo stack)."""
    ids: list[uuid.UUID] = await SearchStore(db).people("", MAX_ACCOUNTS, None)
    users = UserStore(db)
    for start in range(0, len(ids), CHUNK):
        records = await users.fetch(ids[start : start + CHUNK])
        found = sorted(r.username for r in records if not is_demo(r.email))
        if found:
            return found[:SHOWN]
    return []
