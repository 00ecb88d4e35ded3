// A post with its comments, and the form to add one. Time on the page is its dwell.
import { useEffect, useState } from "preact/hooks";
import { track } from "../analytics.js";
import { mutate, query } from "../api.js";
import { CREATE_COMMENT, POST_QUERY } from "../gql.js";
import { Avatar, displayName, ErrorText, Time, useAction, useLoad, useScreen } from "../ui/common.jsx";
import { PostCard } from "../ui/post.jsx";
import { ReportButton } from "../ui/report.jsx";
import { session } from "../session.js";

function CommentForm({ postId, onAdded }) {
  const [text, setText] = useState("");
  const { busy, error, run } = useAction();
  const submit = (event) =>
    run(event, async () => {
      const data = await mutate(CREATE_COMMENT, { postId, text });
      onAdded(data.createComment);
      setText("");
    });
  return (
    <form class="card" onSubmit={submit}>
      <label for="comment-text">Add a comment</label>
      <textarea id="comment-text" rows={2} value={text} onInput={(event) => setText(event.currentTarget.value)} />
      <ErrorText error={error} />
      <div class="row end">
        <button type="submit" class="primary" disabled={busy || !text.trim()}>
          Comment
        </button>
      </div>
    </form>
  );
}

export function PostPage({ id }) {
  const heading = useScreen("Post");
  const { data, error, loading, setData } = useLoad(() => query(POST_QUERY, { id }), [id]);
  const [more, setMore] = useState(false);
  useEffect(() => {
    const opened = Date.now();
    return () => track("DWELL", id, { dwellMs: Math.min(Date.now() - opened, 3_600_000) });
  }, [id]);

  const post = data?.post;
  const comments = post?.comments.edges.map((edge) => edge.node) ?? [];

  async function older() {
    setMore(true);
    try {
      const next = await query(POST_QUERY, { id, after: post.comments.pageInfo.endCursor });
      setData((current) => ({
        post: {
          ...current.post,
          comments: {
            edges: [...current.post.comments.edges, ...next.post.comments.edges],
            pageInfo: next.post.comments.pageInfo,
          },
        },
      }));
    } finally {
      setMore(false);
    }
  }

  return (
    <>
      <h1 tabIndex={-1} ref={heading} class="visually-hidden">
        Post
      </h1>
      {loading && !data && <p class="muted">Loading…</p>}
      <ErrorText error={error} />
      {data && !post && <p>This post does not exist or is not visible to you.</p>}
      {post && (
        <>
          <PostCard
            post={post}
            onChange={(next) => setData((current) => ({ post: { ...current.post, ...next } }))}
            onDelete={() => history.back()}
          />
          <CommentForm
            postId={id}
            onAdded={(comment) =>
              setData((current) => ({
                post: {
                  ...current.post,
                  commentCount: current.post.commentCount + 1,
                  comments: { ...current.post.comments, edges: [{ node: comment }, ...current.post.comments.edges] },
                },
              }))
            }
          />
          <section aria-labelledby="comments-title">
            <h2 id="comments-title">Comments</h2>
            {comments.length === 0 && <p class="muted">No comments yet.</p>}
            <ul class="comments">
              {comments.map((comment) => (
                <li key={comment.id} class="comment">
                  <Avatar user={comment.author} size={28} />
                  <div>
                    <p>
                      <strong>{displayName(comment.author)}</strong> <Time at={comment.createdAt} />
                    </p>
                    <p class="text">{comment.text}</p>
                    {comment.author?.id !== session.value?.user?.id && (
                      <ReportButton targetType="COMMENT" targetId={comment.id} what={`comment by ${comment.author?.username ?? "a deleted account"}`} />
                    )}
                  </div>
                </li>
              ))}
            </ul>
            {post.comments.pageInfo.hasNextPage && (
              <button type="button" onClick={older} disabled={more}>
                More comments
              </button>
            )}
          </section>
        </>
      )}
    </>
  );
}
