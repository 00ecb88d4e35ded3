"""Whether a stack has people on it: accounts a demo seed did not make.

A seed must not pour thousands of synthetic posts and likes into the feeds, notifications
and training data of real people, so it refuses such a stack unless forced. Seeded accounts
are those whose email is at the reserved `EMAIL_DOMAIN`.
"""

from __future__ import annotations

from deployments.demo.plan import EMAIL_DOMAIN
from storage.db import Database
from storage.repositories.users import UserStore

SHOWN = 3


async def real_accounts(db: Database) -> list[str]:
    """Usernames of a few accounts a seed did not make (none on a fresh or demo stack)."""
    return await UserStore(db).outside_domain(EMAIL_DOMAIN, SHOWN)
