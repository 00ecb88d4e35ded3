// The home feed: compose, LATEST or RANKED, endless scrolling, and a banner for posts
// that arrived since the page was loaded (`feedUpdated`).
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { live, mutate, query } from "../api.js";
import { CREATE_POST, FEED, FEED_UPDATED, SUGGESTIONS } from "../gql.js";
import { AttachButton, AttachmentList, useAttachments } from "../ui/attachments.jsx";
import { ErrorText, newId, useAction, useScreen, useWhenVisible } from "../ui/common.jsx";
import { PostCard } from "../ui/post.jsx";
import { UserRow } from "../ui/users.jsx";
import { StoriesRow } from "./stories.jsx";

const PAGE = 20;
const MODE_KEY = "nova.feedMode";

function Compose({ onPosted }) {
  const [text, setText] = useState("");
  const [key, setKey] = useState(newId);
  const attachments = useAttachments();
  const form = useRef(null);
  const { busy, error, run } = useAction();
  const empty = !text.trim() && attachments.mediaIds.length === 0;

  const submit = (event) =>
    run(event, async () => {
      if (empty || attachments.uploading) return;
      // The same key on a retry: a post is created once however often it is sent. Media
      // still processing is posted as it is: the card turns to the picture or video live.
      const input = { text, idempotencyKey: key, mediaIds: attachments.mediaIds };
      const data = await mutate(CREATE_POST, { input });
      onPosted(data.createPost);
      setText("");
      attachments.clear();
      setKey(newId());
    });

  return (
    <form class="compose card" onSubmit={submit} ref={form}>
      <label for="compose-text">What's happening?</label>
      <textarea
        id="compose-text"
        value={text}
        maxLength={5000}
        rows={3}
        onInput={(event) => setText(event.currentTarget.value)}
        onKeyDown={(event) => event.key === "Enter" && (event.ctrlKey || event.metaKey) && submit(event)}
      />
      <AttachmentList attachments={attachments} />
      <ErrorText error={error} />
      <div class="row between">
        <AttachButton attachments={attachments} id="compose-media" label="Add pictures or a video" dropTarget={form} />
        <button type="submit" class="primary" disabled={busy || attachments.uploading || empty}>
          Post
        </button>
      </div>
    </form>
  );
}

function ModeSwitch({ mode, onChange }) {
  return (
    <fieldset class="segmented">
      <legend class="visually-hidden">Feed order</legend>
      {[
        ["LATEST", "Latest"],
        ["RANKED", "For you"],
      ].map(([value, label]) => (
        <label key={value} class={mode === value ? "selected" : ""}>
          <input
            type="radio"
            name="feed-mode"
            value={value}
            checked={mode === value}
            onChange={() => onChange(value)}
          />
          {label}
        </label>
      ))}
    </fieldset>
  );
}

function Suggestions() {
  const [users, setUsers] = useState([]);
  useEffect(() => {
    query(SUGGESTIONS).then((data) => setUsers(data.followSuggestions), () => {});
  }, []);
  if (!users.length) return null;
  return (
    <section class="card" aria-labelledby="suggestions-title">
      <h2 id="suggestions-title">People to follow</h2>
      <ul class="users">
        {users.map((user) => (
          <UserRow key={user.id} user={user} />
        ))}
      </ul>
    </section>
  );
}

export function Home() {
  const heading = useScreen("Home");
  const [mode, setMode] = useState(() => localStorage.getItem(MODE_KEY) ?? "LATEST");
  const [edges, setEdges] = useState([]);
  const [page, setPage] = useState({ hasNextPage: false, endCursor: null });
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const [fresh, setFresh] = useState(new Set());

  const load = useCallback(
    async (after) => {
      setLoading(true);
      setError(null);
      try {
        const data = await query(FEED, { mode, first: PAGE, after });
        setEdges((previous) => {
          const kept = after ? previous : [];
          const known = new Set(kept.map((edge) => edge.node.id));
          return [...kept, ...data.feed.edges.filter((edge) => !known.has(edge.node.id))];
        });
        setPage(data.feed.pageInfo);
        if (!after) setFresh(new Set());
      } catch (failure) {
        setError(failure);
      } finally {
        setLoading(false);
      }
    },
    [mode],
  );

  useEffect(() => {
    load(null);
  }, [load]);

  // Subscribed as the screen opens, with its first page: a post that arrives in between
  // would otherwise show neither in the page nor in the banner.
  useEffect(
    () =>
      live(FEED_UPDATED, {}, (data) => {
        const id = data.feedUpdated.postId;
        setEdges((current) => {
          if (!current.some((edge) => edge.node.id === id)) setFresh((ids) => new Set(ids).add(id));
          return current;
        });
      }),
    [],
  );

  const more = useCallback(() => {
    if (!loading && page.hasNextPage) load(page.endCursor);
  }, [loading, page, load]);
  const sentinel = useWhenVisible(more, page.hasNextPage && !loading);

  function changeMode(next) {
    localStorage.setItem(MODE_KEY, next);
    setMode(next);
  }

  function showFresh() {
    window.scrollTo({ top: 0 });
    load(null);
  }

  const patch = (post) =>
    setEdges((current) => current.map((edge) => (edge.node.id === post.id ? { ...edge, node: post } : edge)));
  const drop = (post) => setEdges((current) => current.filter((edge) => edge.node.id !== post.id));

  return (
    <>
      <div class="row between">
        <h1 tabIndex={-1} ref={heading}>
          Home
        </h1>
        <ModeSwitch mode={mode} onChange={changeMode} />
      </div>
      <StoriesRow />
      <Compose
        onPosted={(post) => setEdges((current) => [{ cursor: "", node: post, score: null, modelVersion: null }, ...current])}
      />
      <div aria-live="polite">
        {fresh.size > 0 && (
          <button type="button" class="banner" onClick={showFresh}>
            {fresh.size === 1 ? "1 new post" : `${fresh.size} new posts`}: show
          </button>
        )}
      </div>
      <ErrorText error={error} />
      <section aria-label="Feed" aria-busy={loading} class="feed">
        {edges.map((edge, index) => (
          <PostCard
            key={edge.node.id}
            post={edge.node}
            position={index}
            modelVersion={edge.modelVersion}
            onChange={patch}
            onDelete={drop}
          />
        ))}
      </section>
      {!loading && edges.length === 0 && !error && (
        <>
          <p class="empty">Your feed is empty. Follow people to see their posts here.</p>
          <Suggestions />
        </>
      )}
      <div ref={sentinel} class="sentinel">
        {loading && <p class="muted">Loading…</p>}
      </div>
    </>
  );
}
