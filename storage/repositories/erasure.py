"""Account deletion: the request and its grace period, the erasure, and the scrub's queue.

`deleteMyAccount` sets `users.erase_after` and ends every session; a sign-in before then
clears it (`storage.repositories.accounts`). Once it has passed, `erase_next` deletes the
account in one transaction, with everything that names it
(`storage.repositories.erase_account`).

A row in `account_erasures` then waits for the scrub (`actors.erasure`), which needs to
know the account's id, name and email to find them in Redis, the shards, the media store,
and in events still retained in the outbox and the dead letters; it is deleted last.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from storage.db import Database
from storage.events import Event
from storage.outbox.rows import add_events
from storage.repositories.erase_account import Erased, erase_account, pseudonymize
from storage.rows import from_rows

REQUESTED_EVENT = "account.deletion.requested"
CANCELLED_EVENT = "account.deletion.cancelled"


@dataclass(frozen=True)
class DeletionRequest:
    requested_at: datetime
    erase_after: datetime
    sessions: list[uuid.UUID]  # ended by the request


@dataclass(frozen=True)
class PendingScrub:
    user_id: uuid.UUID
    username: str
    email: str
    pseudonym: uuid.UUID
    rooms: list[uuid.UUID]
    files: list[uuid.UUID]
    attempts: int


class ErasureStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the request -------------------------------------------------------------------

    async def request(self, user_id: uuid.UUID, grace_s: float) -> DeletionRequest | None:
        """Schedule the erasure `grace_s` from now (a second request keeps the first date)
        and end every session, with the `account.deletion.requested` event (the mail
        consumer sends a notice). None if the account does not exist."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """
                UPDATE users
                SET erase_after = coalesce(erase_after, now() + make_interval(secs => $2)),
                    version = version + 1, updated_at = now()
                WHERE id = $1
                RETURNING now() AS requested_at, erase_after
                """,
                user_id,
                float(grace_s),
            )
            if row is None:
                return None
            sessions = await conn.fetch(
                """
                UPDATE auth_sessions SET revoked_at = now(), revoked_reason = 'account deletion'
                WHERE user_id = $1 AND revoked_at IS NULL RETURNING id
                """,
                user_id,
            )
            await add_events(
                conn,
                [
                    Event(
                        REQUESTED_EVENT,
                        str(user_id),
                        {"user_id": str(user_id), "erase_after": row["erase_after"].isoformat()},
                    )
                ],
            )
        return DeletionRequest(row["requested_at"], row["erase_after"], [r["id"] for r in sessions])

    # -- the erasure -------------------------------------------------------------------

    async def erase_next(self, scrub_after_s: float) -> Erased | None:
        """Erase one account whose grace period has passed; None if none is due."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """
                SELECT id, username, email, erase_after FROM users
                WHERE erase_after <= now()
                ORDER BY erase_after LIMIT 1
                FOR UPDATE SKIP LOCKED
                """
            )
            if row is None:
                return None
            return await erase_account(conn, row, scrub_after_s)

    # -- the scrub ---------------------------------------------------------------------

    async def due_scrubs(self, limit: int) -> list[PendingScrub]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT user_id, username, email, pseudonym, rooms, files, attempts
                FROM account_erasures
                WHERE scrub_after <= now() ORDER BY scrub_after LIMIT $1
                """,
                limit,
            )
        return from_rows(PendingScrub, rows)

    async def events_unpublished(self, user_id: uuid.UUID) -> bool:
        """Whether events naming the account still wait for the relay: the scrub of the
        outbox must come after them, or it would find them again later."""
        async with self._db.connection() as conn:
            found = await conn.fetchval(
                """
                SELECT EXISTS (
                    SELECT 1 FROM outbox
                    WHERE published_at IS NULL
                      AND (aggregate_id = $1 OR payload::text LIKE '%' || $1 || '%')
                )
                """,
                str(user_id),
            )
        return bool(found)

    async def scrub_rows(self, scrub: PendingScrub) -> int:
        """Pseudonymize analytics rows the sink wrote after the erasure from events sent
        before it; delete published events and dead letters that name the account: its
        id anywhere, its username or email as a whole JSON string (their work is done;
        only a redrive would have read them again). Returns how many rows changed."""
        patterns = [
            f"%{scrub.user_id}%",
            *(f'%"{word}"%' for word in (scrub.username, scrub.email)),
        ]
        async with self._db.transaction() as conn:
            late = await pseudonymize(conn, scrub.user_id, scrub.pseudonym)
            outbox = await conn.execute(
                """
                DELETE FROM outbox
                WHERE published_at IS NOT NULL
                  AND (aggregate_id = $1 OR payload::text ILIKE ANY ($2::text[]))
                """,
                str(scrub.user_id),
                patterns,
            )
            letters = await conn.execute(
                "DELETE FROM dead_letters WHERE event::text ILIKE ANY ($1::text[])", patterns
            )
        return late + int(outbox.split()[-1]) + int(letters.split()[-1])

    async def scrubbed(self, user_id: uuid.UUID) -> None:
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM account_erasures WHERE user_id = $1", user_id)

    async def scrub_failed(self, user_id: uuid.UUID, error: str, retry_s: float) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                """
                UPDATE account_erasures
                SET attempts = attempts + 1, last_error = $2,
                    scrub_after = now() + make_interval(secs => $3)
                WHERE user_id = $1
                """,
                user_id,
                error[:1000],
                float(retry_s),
            )
