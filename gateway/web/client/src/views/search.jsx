// Search people and posts; the query lives in the address so results can be linked.
import { useState } from "preact/hooks";
import { query } from "../api.js";
import { SEARCH } from "../gql.js";
import { navigate, route } from "../router.js";
import { ErrorText, useLoad, useScreen } from "../ui/common.jsx";
import { PostCard } from "../ui/post.jsx";
import { UserRow } from "../ui/users.jsx";

export function Search() {
  const heading = useScreen("Search");
  const current = route.value.query.get("q") ?? "";
  const [text, setText] = useState(current);
  const { data, error, loading, setData } = useLoad(
    () => (current.trim() ? query(SEARCH, { query: current }) : Promise.resolve(null)),
    [current],
  );
  const patch = (post) =>
    setData((previous) => ({
      ...previous,
      searchPosts: {
        edges: previous.searchPosts.edges.map((edge) => (edge.node.id === post.id ? { node: post } : edge)),
      },
    }));
  return (
    <>
      <h1 tabIndex={-1} ref={heading}>
        Search
      </h1>
      <form
        role="search"
        class="row"
        onSubmit={(event) => {
          event.preventDefault();
          navigate(`/search?q=${encodeURIComponent(text)}`);
        }}
      >
        <label for="search-text" class="visually-hidden">
          Search people and posts
        </label>
        <input
          id="search-text"
          type="search"
          class="grow"
          placeholder="People, words or #tags"
          value={text}
          onInput={(event) => setText(event.currentTarget.value)}
        />
        <button type="submit" class="primary">
          Search
        </button>
      </form>
      <ErrorText error={error} />
      {loading && current && <p class="muted">Searching…</p>}
      {data && (
        <>
          <section aria-labelledby="people-title">
            <h2 id="people-title">People</h2>
            {data.searchUsers.length === 0 && <p class="muted">No one matches.</p>}
            <ul class="users">
              {data.searchUsers.map((user) => (
                <UserRow key={user.id} user={user} />
              ))}
            </ul>
          </section>
          <section aria-labelledby="posts-title" class="feed">
            <h2 id="posts-title">Posts</h2>
            {data.searchPosts.edges.length === 0 && <p class="muted">No posts match.</p>}
            {data.searchPosts.edges.map((edge, index) => (
              <PostCard key={edge.node.id} post={edge.node} position={index} onChange={patch} />
            ))}
          </section>
        </>
      )}
    </>
  );
}
