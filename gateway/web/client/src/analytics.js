// Impressions, clicks and dwell, reported through `trackEvents` as ranking needs them:
// an impression once a post is half on screen for the first time on a page, with its
// position and the model version that placed it. Sent in batches, and on leaving.
import { mutate } from "./api.js";
import { TRACK } from "./gql.js";
import { session } from "./session.js";

const BATCH = 50; // trackEvents takes up to 100 per call
const FLUSH_MS = 5000;
let queue = [];
let timer = null;

export function track(kind, postId, { position = null, modelVersion = null, dwellMs = null } = {}) {
  if (!session.value) return;
  queue.push({ kind, postId, position, modelVersion, dwellMs });
  if (queue.length >= BATCH) flush();
  else if (!timer) timer = setTimeout(flush, FLUSH_MS);
}

/** Send what is queued; `leaving`: the page is going away, so the request must outlive it. */
export async function flush({ leaving = false } = {}) {
  clearTimeout(timer);
  timer = null;
  while (queue.length) {
    const events = queue.splice(0, BATCH);
    try {
      await mutate(TRACK, { events }, leaving ? { fetchOptions: { keepalive: true } } : undefined);
    } catch {
      // Ranking data is best effort: a lost batch is not worth a person's attention.
    }
  }
}

addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") flush({ leaving: true });
});

const seen = new WeakSet();
const observer =
  typeof IntersectionObserver === "undefined"
    ? null
    : new IntersectionObserver(
        (entries) => {
          for (const entry of entries) {
            if (!entry.isIntersecting || seen.has(entry.target)) continue;
            seen.add(entry.target);
            observer.unobserve(entry.target);
            const { postId, position, modelVersion } = entry.target.dataset;
            track("IMPRESSION", postId, {
              position: position ? Number(position) : null,
              modelVersion: modelVersion || null,
            });
          }
        },
        { threshold: 0.5 },
      );

/** Report an impression when `element` (with data-post-id) is first half visible. */
export function watchImpression(element) {
  if (element && observer && !seen.has(element)) observer.observe(element);
  return () => element && observer?.unobserve(element);
}
