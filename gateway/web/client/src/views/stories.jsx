// Stories on the home screen: a row with "Your story" and one item per followed author
// (`storyFeed`, unseen first, a ring until all are seen); a viewer that shows an author's
// stories in order, records each view (`viewStory`) and moves on by itself, and lets an
// author see who viewed theirs (`storyViewers`); a dialog that publishes a new one.
// Nothing pushes new stories: the row loads when the screen opens (after the feed's first
// page) and again when the page becomes visible.
import { useEffect, useRef, useState } from "preact/hooks";
import { afterFirstAnswer, mutate, query } from "../api.js";
import { CREATE_STORY, DELETE_STORY, STORIES, STORY_VIEW_COUNT, STORY_VIEWERS, VIEW_STORY } from "../gql.js";
import { notify } from "../notices.js";
import { session } from "../session.js";
import { AttachButton, AttachmentList, useAttachments } from "../ui/attachments.jsx";
import { Avatar, Dialog, displayName, ErrorText, Time, useAction } from "../ui/common.jsx";
import { MediaView } from "../ui/media.jsx";
import { ReportButton } from "../ui/report.jsx";

const PICTURE_SHOWN_MS = 5000;
const MAX_TEXT = 500;
const STORY_SIZES = "(max-width: 480px) 100vw, 440px";

function timeLeft(expiresAt) {
  const ms = new Date(expiresAt).getTime() - Date.now();
  const hours = Math.floor(ms / 3_600_000);
  // No break inside "23 h": a non-breaking space.
  return hours >= 1 ? `${hours}\u00a0h left` : `${Math.max(1, Math.ceil(ms / 60_000))}\u00a0min left`;
}

const withSeen = (author, storyId) => {
  const stories = author.stories.map((story) => (story.id === storyId ? { ...story, seen: true } : story));
  return { ...author, stories, hasUnseen: stories.some((story) => !story.seen) };
};

function Viewers({ story }) {
  const [edges, setEdges] = useState([]);
  const [page, setPage] = useState({ hasNextPage: false, endCursor: null });
  const { busy, error, run } = useAction();
  const load = (after) =>
    run(null, async () => {
      const data = await query(STORY_VIEWERS, { storyId: story.id, after });
      setEdges((current) => [...(after ? current : []), ...data.storyViewers.edges]);
      setPage(data.storyViewers.pageInfo);
    });
  useEffect(() => {
    load(null);
  }, [story.id]);
  return (
    <section class="viewers" aria-label="Viewers" aria-busy={busy}>
      <ErrorText error={error} />
      {!busy && edges.length === 0 && !error && <p class="muted">No one has viewed it yet.</p>}
      <ul class="users">
        {edges.map(({ cursor, node }) => (
          <li key={cursor} class="user-row">
            <a href={node.user ? `/u/${encodeURIComponent(node.user.username)}` : undefined}>
              <Avatar user={node.user} size={32} />
              <span>{displayName(node.user)}</span>
            </a>
            <span class="muted">
              <Time at={node.viewedAt} />
            </span>
          </li>
        ))}
      </ul>
      {page.hasNextPage && (
        <button type="button" disabled={busy} onClick={() => load(page.endCursor)}>
          More viewers
        </button>
      )}
    </section>
  );
}

function StoryMedia({ story, onEnded }) {
  if (!story.media) return <p class="muted">This story's media is gone.</p>;
  const label = story.media.kind === "VIDEO" ? "Video" : "Picture";
  return <MediaView media={story.media} label={label} sizes={STORY_SIZES} autoPlay onEnded={onEnded} />;
}

/**
 * One author's stories, from `start`. `onSeen(id)` after `viewStory` recorded a view;
 * `onDone(step)` when moving past the last (+1) or before the first (-1) story.
 */
function StoryViewer({ author, stories, start, mine, onSeen, onDone, onDeleted, onClose }) {
  const [index, setIndex] = useState(start);
  const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)").matches;
  const [paused, setPaused] = useState(reducedMotion);
  const [showViewers, setShowViewers] = useState(false);
  const [reporting, setReporting] = useState(false);
  const [viewCount, setViewCount] = useState({});
  const story = stories[Math.min(index, stories.length - 1)];
  const name = mine ? "Your story" : `${displayName(author)}'s story`;

  const go = (step) => {
    setShowViewers(false);
    const next = index + step;
    if (next < 0 || next >= stories.length) onDone(step);
    else setIndex(next);
  };

  // Each story shown is a view (the author's own are not counted by the server either).
  useEffect(() => {
    if (mine) {
      query(STORY_VIEW_COUNT, { id: story.id }).then(
        (data) => data.story && setViewCount((counts) => ({ ...counts, [story.id]: data.story.viewCount })),
        () => {},
      );
    } else if (!story.seen) {
      mutate(VIEW_STORY, { id: story.id }).then(() => onSeen(story.id), () => {});
    }
  }, [story.id]);

  // A picture moves on after a few seconds; a video when it ends. Not while paused, nor
  // while the author reads who viewed it or someone reports it, nor for people who asked
  // for less motion.
  const still = paused || showViewers || reporting;
  useEffect(() => {
    if (still || story.media?.kind === "VIDEO") return undefined;
    const timer = setTimeout(() => go(1), PICTURE_SHOWN_MS);
    return () => clearTimeout(timer);
  }, [story.id, still]);

  function onKeyDown(event) {
    if (event.target.closest?.("input, textarea, select, video, .report")) return;
    if (event.key === "ArrowRight") go(1);
    else if (event.key === "ArrowLeft") go(-1);
    else return;
    event.preventDefault();
  }

  async function remove() {
    if (!confirm("Delete this story?")) return;
    try {
      await mutate(DELETE_STORY, { id: story.id });
      notify("Story deleted.");
      onDeleted(story.id);
    } catch (error) {
      notify(error.message, { kind: "error" });
    }
  }

  const views = viewCount[story.id] ?? story.viewCount ?? 0;
  return (
    <Dialog class="story-viewer" aria-label={name} onClose={onClose} onKeyDown={onKeyDown}>
      <ol class="story-bars" aria-hidden="true">
        {stories.map((each, at) => (
          <li key={each.id} class={at < index ? "done" : at === index ? `now ${still ? "still" : ""}` : ""} />
        ))}
      </ol>
      <header class="story-head">
        <Avatar user={author} size={32} />
        <span class="grow">
          <strong>{mine ? "Your story" : displayName(author)}</strong>{" "}
          <span class="dim">
            <Time at={story.createdAt} /> · {timeLeft(story.expiresAt)}
          </span>
        </span>
        <button type="button" class="quiet" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </header>
      <p class="visually-hidden" aria-live="polite">
        Story {index + 1} of {stories.length}
      </p>
      <div class="story-media" key={story.id}>
        <StoryMedia story={story} onEnded={() => !still && go(1)} />
      </div>
      {story.text && <p class="story-text">{story.text}</p>}
      <footer class="story-controls">
        <button type="button" aria-label="Previous story" onClick={() => go(-1)}>
          ‹
        </button>
        <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
          Pause
        </button>
        {mine && (
          <>
            <button type="button" aria-expanded={showViewers} onClick={() => setShowViewers(!showViewers)}>
              {views === 1 ? "1 view" : `${views} views`}
            </button>
            <button type="button" onClick={remove}>
              Delete
            </button>
          </>
        )}
        {!mine && <ReportButton targetType="STORY" targetId={story.id} what={`story by ${author.username}`} onOpen={setReporting} />}
        <button type="button" aria-label="Next story" onClick={() => go(1)}>
          ›
        </button>
      </footer>
      {mine && showViewers && <Viewers story={story} />}
    </Dialog>
  );
}

function NewStory({ onPosted, onClose }) {
  const attachments = useAttachments({ limit: 1 });
  const [text, setText] = useState("");
  const { busy, error, run } = useAction();
  const media = attachments.media[0];
  const ready = media?.status === "READY";
  const submit = (event) =>
    run(event, async () => {
      if (!ready) return;
      const data = await mutate(CREATE_STORY, { input: { mediaId: media.id, text: text.trim() } });
      notify("Your story is up for 24 hours.");
      onPosted(data.createStory);
    });
  return (
    <Dialog class="card new-story" aria-labelledby="new-story-title" onClose={onClose}>
      <form onSubmit={submit}>
        <h2 id="new-story-title">New story</h2>
        <p class="muted">A picture or a video, shown to your followers for 24 hours.</p>
        <AttachmentList attachments={attachments} label="Story media" />
        {ready && (
          <div class="story-preview">
            <MediaView media={media} label={media.kind === "VIDEO" ? "Video" : "Picture"} sizes={STORY_SIZES} />
          </div>
        )}
        <AttachButton attachments={attachments} id="story-media" label="Choose a picture or video" />
        <div class="field">
          <label for="story-text">Text (optional)</label>
          <input id="story-text" maxLength={MAX_TEXT} value={text} onInput={(event) => setText(event.currentTarget.value)} />
        </div>
        <ErrorText error={error} />
        <div class="row end">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={busy || !ready}>
            Share story
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/**
 * A person's picture in a ring: the ring says whether their stories are `unseen`. The
 * initial (when they have no avatar) and the "+" are drawn by CSS, so a button's visible
 * text is its name alone and its accessible name can begin with it.
 */
function Ring({ user, state }) {
  return (
    <span class={`ring ${state}`} aria-hidden="true">
      {user?.avatarUrl ? (
        <img class="avatar" src={user.avatarUrl} alt="" width="52" height="52" />
      ) : (
        <span class="avatar" data-initial={displayName(user).slice(0, 1).toUpperCase()} />
      )}
    </span>
  );
}

/** Where the viewer starts: an author's first unseen story, else their first. */
const firstUnseen = (stories) => Math.max(stories.findIndex((story) => !story.seen), 0);

export function StoriesRow() {
  const [data, setData] = useState(null);
  const reload = () => query(STORIES).then(setData, () => {});
  // After the feed's first answer: the feed is what the screen is for.
  useEffect(() => afterFirstAnswer(() => void reload()), []);
  // {who: "mine"} or {who: authorIndex, start, order} while a viewer is open.
  const [open, setOpen] = useState(null);
  const [adding, setAdding] = useState(false);
  const me = session.value?.user;

  useEffect(() => {
    const again = () => document.visibilityState === "visible" && !open && reload();
    document.addEventListener("visibilitychange", again);
    return () => document.removeEventListener("visibilitychange", again);
  }, [open]);

  if (!data) return <div class="stories" aria-busy="true" />;
  const authors = data.storyFeed.filter((entry) => entry.author && entry.stories.length > 0);
  const mine = data.myStories;
  // While a viewer is open, the row keeps its order (seen authors would move back).
  const order = open?.order ?? authors.map((entry) => entry.author.id);
  const byId = Object.fromEntries(authors.map((entry) => [entry.author.id, entry]));

  const seen = (authorId, storyId) =>
    setData((current) => ({
      ...current,
      storyFeed: current.storyFeed.map((entry) => (entry.author?.id === authorId ? withSeen(entry, storyId) : entry)),
    }));
  const openAuthor = (at, step = 1) => {
    const entry = byId[order[at]];
    if (!entry) return setOpen(null);
    setOpen({ who: at, start: step > 0 ? firstUnseen(entry.stories) : entry.stories.length - 1, order });
  };
  const deleted = (storyId) => {
    const left = mine.filter((story) => story.id !== storyId);
    setData((current) => ({ ...current, myStories: left }));
    if (left.length === 0) setOpen(null);
  };

  const viewing = open && open.who !== "mine" ? byId[order[open.who]] : null;
  return (
    <div class="stories">
      <ul class="story-row" aria-label="Stories">
        <li>
          {mine.length > 0 ? (
            <button type="button" class="story-item" onClick={() => setOpen({ who: "mine", start: 0 })}>
              <Ring user={me} state="seen" />
              <span class="story-name">Your story</span>
            </button>
          ) : null}
          <button
            type="button"
            class={mine.length > 0 ? "story-add" : "story-item"}
            aria-label="Add to your story"
            onClick={() => setAdding(true)}
          >
            {mine.length === 0 && (
              <>
                <Ring user={me} state="add" />
                <span class="story-name">Your story</span>
              </>
            )}
          </button>
        </li>
        {order.map((authorId, at) => {
          const entry = byId[authorId];
          if (!entry) return null;
          const who = displayName(entry.author);
          return (
            <li key={authorId}>
              <button
                type="button"
                class="story-item"
                aria-label={`${who}, ${entry.hasUnseen ? "unseen" : "seen"}`}
                onClick={() => openAuthor(at)}
              >
                <Ring user={entry.author} state={entry.hasUnseen ? "unseen" : "seen"} />
                <span class="story-name">{who}</span>
              </button>
            </li>
          );
        })}
      </ul>
      {open?.who === "mine" && mine.length > 0 && (
        <StoryViewer
          author={me}
          stories={mine}
          start={open.start}
          mine
          onSeen={() => {}}
          onDone={() => setOpen(null)}
          onDeleted={deleted}
          onClose={() => setOpen(null)}
        />
      )}
      {viewing && (
        <StoryViewer
          key={viewing.author.id}
          author={viewing.author}
          stories={viewing.stories}
          start={open.start}
          mine={false}
          onSeen={(storyId) => seen(viewing.author.id, storyId)}
          onDone={(step) => openAuthor(open.who + step, step)}
          onDeleted={() => {}}
          onClose={() => setOpen(null)}
        />
      )}
      {adding && (
        <NewStory
          onPosted={(story) => {
            setData((current) => ({ ...current, myStories: [...current.myStories, story] }));
            setAdding(false);
          }}
          onClose={() => setAdding(false)}
        />
      )}
    </div>
  );
}
