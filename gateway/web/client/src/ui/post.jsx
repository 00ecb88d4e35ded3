// One post as every list shows it: author, text, and like, comment and share.
import { useEffect, useRef, useState } from "preact/hooks";
import { track, watchImpression } from "../analytics.js";
import { MediaGrid } from "./media.jsx";
import { mutate } from "../api.js";
import { DELETE_POST, LIKE, SHARE, UNLIKE } from "../gql.js";
import { notify } from "../notices.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { Avatar, displayName, Time } from "./common.jsx";
import { ReportButton } from "./report.jsx";

function Author({ user }) {
  if (!user) return <span class="author">Deleted account</span>;
  return (
    <a class="author" href={`/u/${encodeURIComponent(user.username)}`}>
      <Avatar user={user} size={36} />
      <span>
        <strong>{displayName(user)}</strong> <span class="muted">@{user.username}</span>
      </span>
    </a>
  );
}

export function PostCard({ post, position = null, modelVersion = null, onChange, onDelete }) {
  const ref = useRef(null);
  const [busy, setBusy] = useState(false);
  // An impression is a placement in a list (feed, profile, search); the post's own page
  // is where a click leads, and reports dwell instead.
  useEffect(() => (position === null ? undefined : watchImpression(ref.current)), [post.id, position]);
  const mine = session.value?.user?.id === post.author?.id;
  const open = () => {
    track("CLICK", post.id, { position, modelVersion });
    navigate(`/post/${post.id}`);
  };

  async function toggleLike() {
    const liked = !post.viewerHasLiked;
    // Shown at once; the server's answer corrects the count.
    onChange?.({ ...post, viewerHasLiked: liked, likeCount: post.likeCount + (liked ? 1 : -1) });
    try {
      const data = await mutate(liked ? LIKE : UNLIKE, { postId: post.id });
      const result = data.likePost ?? data.unlikePost;
      onChange?.({ ...post, ...result });
    } catch (error) {
      onChange?.(post);
      notify(error.message, { kind: "error" });
    }
  }

  async function share() {
    setBusy(true);
    try {
      await mutate(SHARE, { postId: post.id, text: null });
      onChange?.({ ...post, shareCount: post.shareCount + 1 });
      notify("Shared to your followers.");
    } catch (error) {
      notify(error.message, { kind: "error" });
    } finally {
      setBusy(false);
    }
  }

  async function remove() {
    if (!confirm("Delete this post?")) return;
    try {
      await mutate(DELETE_POST, { id: post.id });
      onDelete?.(post);
      notify("Post deleted.");
    } catch (error) {
      notify(error.message, { kind: "error" });
    }
  }

  return (
    <article
      class="post"
      ref={ref}
      data-post-id={post.id}
      data-position={position ?? ""}
      data-model-version={modelVersion ?? ""}
      aria-labelledby={`post-${post.id}-by`}
    >
      <header id={`post-${post.id}-by`}>
        <Author user={post.author} />
        <a class="muted when" href={`/post/${post.id}`} onClick={(event) => (event.preventDefault(), open())}>
          <Time at={post.createdAt} />
        </a>
      </header>
      {post.text && <p class="text">{post.text}</p>}
      <MediaGrid media={post.media} follow />
      {post.sharedPost && (
        <blockquote class="shared">
          <Author user={post.sharedPost.author} />
          <p class="text">{post.sharedPost.text}</p>
          <MediaGrid media={post.sharedPost.media} follow />
        </blockquote>
      )}
      {post.tags?.length > 0 && (
        <p class="tags">
          {post.tags.map((tag) => (
            <a key={tag} href={`/search?q=${encodeURIComponent("#" + tag)}`}>
              #{tag}
            </a>
          ))}
        </p>
      )}
      <footer class="actions">
        <button type="button" aria-pressed={post.viewerHasLiked} onClick={toggleLike}>
          <span aria-hidden="true">{post.viewerHasLiked ? "♥" : "♡"}</span> <span>Like</span> <span class="count">{post.likeCount}</span>
        </button>
        <a class="button" href={`/post/${post.id}`} onClick={(event) => (event.preventDefault(), open())}>
          <span>Comment</span> <span class="count">{post.commentCount}</span>
        </a>
        <button type="button" onClick={share} disabled={busy || mine}>
          <span aria-hidden="true">↻</span> <span>Share</span> <span class="count">{post.shareCount}</span>
        </button>
        {mine ? (
          <button type="button" class="quiet" onClick={remove}>
            Delete
          </button>
        ) : (
          session.value && <ReportButton targetType="POST" targetId={post.id} what={`post by ${post.author?.username ?? "a deleted account"}`} />
        )}
      </footer>
    </article>
  );
}
