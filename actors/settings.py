"""The actors' settings: counter, timeline and chat shards, and the topic consumers
(fan-out, notifications, mail). Extends ranking's, which the feature consumer applies."""

from __future__ import annotations

from dataclasses import dataclass

from ranking.settings import RankingSettings
from storage.settings import Bounds, setting


@dataclass(frozen=True)
class ActorSettings(RankingSettings):
    """Shards: how many, when idle keys leave memory, and the call timeout. Consumers: who
    is fanned out to, how old an act may be to notify, where mail goes."""

    # Counter shards (likes, comments, shares, follower counts).
    counter_shards: int = setting(4, "counter shard actors")
    counter_max_batch: int = setting(1_000, "likes one group commit takes")
    counter_idle_ttl_s: float = setting(300.0, "an idle post's counters leave memory after this")
    counter_refresh_s: float = setting(
        30.0, "counters in use are re-read this often (bounds a lost update notice)"
    )
    counter_call_timeout_s: float = setting(5.0, "bound on a call to a counter shard")

    # Home timelines (TimelineShard actors) and fan-out.
    timeline_shards: int = setting(4, "timeline shard actors")
    timeline_capacity: int = setting(800, "entries kept per home timeline")
    timeline_idle_ttl_s: float = setting(600.0, "an idle timeline leaves memory after this")
    timeline_call_timeout_s: float = setting(5.0, "bound on a call to a timeline shard")
    timeline_direct_reads: bool = setting(
        True, "page reads over each shard's direct channel instead of Ray calls"
    )
    fanout_max_followers: int = setting(
        10_000, "authors with more followers are merged in at read time instead of fanned out"
    )
    inactive_after_days: int = setting(
        30, "followers not seen this long are skipped by fan-out and rebuilt when they return"
    )
    feed_backfill_posts: int = setting(50, "an author's recent posts a new follow brings in")

    # Chat rooms (ChatShard actors).
    chat_shards: int = setting(2, "chat shard actors")
    chat_call_timeout_s: float = setting(5.0, "bound on a call to a chat shard")

    # Notifications.
    notification_max_age_s: int = setting(
        7 * 24 * 3600,
        "acts older than this notify no one (a consumer group starting on a retained log "
        "does not flood inboxes with old news)",
    )
    notification_live_s: int = setting(300, "only acts newer than this are pushed live")
    notification_email_after_s: int = setting(
        3600,
        "users away this long (no WebSocket, no sign-in or token refresh, no feed read) get "
        "their unread notifications by email, in a digest",
    )
    notification_digest_interval_s: int = setting(
        3600, "one user gets at most one notification digest this often"
    )
    notification_digest_poll_s: float = setting(
        60.0, "how often the digest job looks for users owed a digest"
    )
    notification_digest_batch: int = setting(100, "users one digest run mails at most")
    notification_digest_max_items: int = setting(20, "notifications one digest lists at most")
    unsubscribe_token_ttl_s: int = setting(
        90 * 24 * 3600, "how long a mail's one-click unsubscribe link works"
    )

    # Account deletion and erasure (`actors.erasure`).
    account_deletion_grace_s: int = setting(
        14 * 24 * 3600, "between deleteMyAccount and the erasure; signing in cancels it"
    )
    erasure_poll_s: float = setting(60.0, "how often the erasure job looks for work")
    erasure_scrub_after_s: float = setting(
        600.0,
        "from an account's erasure to the scrub of what is derived from it (Redis, shards, "
        "the media store, retained events): time for the consumers to apply its events",
    )

    # Mail: the mail consumer delivers reset and verification messages.
    smtp_url: str = setting(
        "smtp://127.0.0.1:20025",
        "where mail is delivered; the embedded stack's SMTP sink (a Maildir) unless set",
        Bounds(prefixes=("smtp://", "smtps://")),
    )
    smtp_timeout_s: float = setting(10.0, "bound on one SMTP delivery")
    mail_from: str = setting("Nova <no-reply@nova.localhost>", "the sender of Nova's mail")
    public_url: str = setting(
        "http://127.0.0.1:8000", "where clients reach Nova; links in mail point here"
    )

    # Media processing (`actors.media`): Ray tasks leased from PostgreSQL's queue.
    media_max_image_pixels: int = setting(
        50_000_000, "larger images are refused before they are decoded (decompression bombs)"
    )
    media_lease_s: float = setting(
        300.0, "how long a claim on a media job lasts before another processor may take it"
    )
    media_max_attempts: int = setting(3, "claims of one media job before it is FAILED")
    media_concurrency: int = setting(
        2,
        "media tasks one processor runs at once (videos queue further in Ray, for the "
        "`transcode` resource each node declares)",
    )
    media_max_video_duration_s: float = setting(600.0, "longer videos are refused")
    media_transcode_threads: int = setting(
        1, "ffmpeg threads per transcode: a transcode holds one CPU of Ray's"
    )
    media_transcode_timeout_s: float = setting(
        1800.0, "bound on one video's transcode; past it the job is tried again"
    )
    media_delete_after_s: float = setting(
        604_800.0,
        "how long a deleted post's or message's media is kept (a removal may yet be undone) "
        "before its files and rows are deleted",
    )
