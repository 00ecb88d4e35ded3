// A person's page: who they are, follow, their posts, and their followers and following.
import { useCallback, useState } from "preact/hooks";
import { mutate, query } from "../api.js";
import { notify } from "../notices.js";
import { session } from "../session.js";
import { ReportButton } from "../ui/report.jsx";
import { FOLLOWERS, FOLLOWING, MUTE_USER, PROFILE, USER_POSTS } from "../gql.js";
import { Avatar, displayName, ErrorText, useLoad, useScreen, useWhenVisible } from "../ui/common.jsx";
import { PostCard } from "../ui/post.jsx";
import { FollowButton, UserRow } from "../ui/users.jsx";

/** A cursor-paged list that loads its next page as its end scrolls into view. */
function usePaged(fetchPage, deps) {
  const { data, error, loading, setData } = useLoad(() => fetchPage(null), deps);
  const [busy, setBusy] = useState(false);
  const more = useCallback(async () => {
    if (busy || !data?.pageInfo.hasNextPage) return;
    setBusy(true);
    try {
      const next = await fetchPage(data.pageInfo.endCursor);
      setData((current) => ({ edges: [...current.edges, ...next.edges], pageInfo: next.pageInfo }));
    } finally {
      setBusy(false);
    }
  }, [busy, data]);
  const sentinel = useWhenVisible(more, Boolean(data?.pageInfo.hasNextPage) && !busy);
  return { data, error, loading: loading || busy, setData, sentinel };
}

function Posts({ userId }) {
  const list = usePaged(async (after) => (await query(USER_POSTS, { userId, after })).userPosts, [userId]);
  const patch = (post) =>
    list.setData((current) => ({
      ...current,
      edges: current.edges.map((edge) => (edge.node.id === post.id ? { ...edge, node: post } : edge)),
    }));
  return (
    <section aria-label="Posts" class="feed">
      <ErrorText error={list.error} />
      {list.data?.edges.map((edge, index) => (
        <PostCard key={edge.node.id} post={edge.node} position={index} onChange={patch} />
      ))}
      {list.data && list.data.edges.length === 0 && <p class="muted">No posts yet.</p>}
      <div ref={list.sentinel}>{list.loading && <p class="muted">Loading…</p>}</div>
    </section>
  );
}

function People({ userId, tab }) {
  const document = tab === "followers" ? FOLLOWERS : FOLLOWING;
  const list = usePaged(async (after) => (await query(document, { userId, after }))[tab], [userId, tab]);
  return (
    <section aria-label={tab === "followers" ? "Followers" : "Following"}>
      <ErrorText error={list.error} />
      <ul class="users">
        {list.data?.edges.map((edge) => (
          <UserRow key={edge.node.id} user={edge.node} />
        ))}
      </ul>
      {list.data && list.data.edges.length === 0 && <p class="muted">Nobody yet.</p>}
      <div ref={list.sentinel}>{list.loading && <p class="muted">Loading…</p>}</div>
    </section>
  );
}

export function Profile({ username, tab }) {
  const { data, error, loading, setData } = useLoad(() => query(PROFILE, { username }), [username]);
  const user = data?.user;
  const heading = useScreen(user ? displayName(user) : username);
  const base = `/u/${encodeURIComponent(username)}`;
  const follows = (now) =>
    setData((current) => ({
      user: { ...current.user, viewerFollows: now, followerCount: current.user.followerCount + (now ? 1 : -1) },
    }));
  return (
    <>
      <ErrorText error={error} />
      {loading && !data && <p class="muted">Loading…</p>}
      {data && !user && <p>No one is called @{username}.</p>}
      {user && (
        <>
          <section class="card profile">
            <Avatar user={user} size={72} />
            <div class="grow">
              <h1 tabIndex={-1} ref={heading}>
                {displayName(user)}
              </h1>
              <p class="muted">
                @{user.username}
                {user.followsViewer && <span class="badge"> Follows you</span>}
              </p>
              {user.bio && <p>{user.bio}</p>}
            </div>
            <FollowButton key={user.id} user={user} onChange={follows} />
            {user.id !== session.value?.user?.id && (
              <div class="row">
                <button
                  type="button"
                  class="quiet"
                  aria-label={`Mute ${user.username}`}
                  onClick={() =>
                    mutate(MUTE_USER, { id: user.id }).then(
                      () => notify(`Muted @${user.username}: they will not notify you. Unmute them in Settings.`),
                      (failure) => notify(failure.message, { kind: "error" }),
                    )
                  }
                >
                  Mute
                </button>
                <ReportButton targetType="USER" targetId={user.id} what={`@${user.username}`} />
              </div>
            )}
          </section>
          <nav class="tabs" aria-label="Profile sections">
            <a href={base} aria-current={!tab ? "page" : undefined}>
              Posts
            </a>
            <a href={`${base}/followers`} aria-current={tab === "followers" ? "page" : undefined}>
              {user.followerCount} Followers
            </a>
            <a href={`${base}/following`} aria-current={tab === "following" ? "page" : undefined}>
              {user.followingCount} Following
            </a>
          </nav>
          {tab ? <People userId={user.id} tab={tab} /> : <Posts userId={user.id} />}
        </>
      )}
    </>
  );
}
