// History-API routing: one pattern per screen; links and `navigate` push a new entry.
import { signal } from "@preact/signals";

const ROUTES = [
  ["home", /^\/$/],
  ["login", /^\/login$/],
  ["signup", /^\/signup$/],
  ["verifyEmail", /^\/verify-email$/],
  ["resetPassword", /^\/reset-password$/],
  ["post", /^\/post\/(?<id>[^/]+)$/],
  ["profile", /^\/u\/(?<username>[^/]+)(?:\/(?<tab>followers|following))?$/],
  ["search", /^\/search$/],
  ["chat", /^\/chat(?:\/(?<id>[^/]+))?$/],
  ["notifications", /^\/notifications$/],
  ["settings", /^\/settings$/],
  ["moderation", /^\/moderation(?:\/(?<tab>resolved|log))?$/],
];

function match(url) {
  for (const [name, pattern] of ROUTES) {
    const found = pattern.exec(url.pathname);
    if (found) {
      const params = Object.fromEntries(
        Object.entries(found.groups ?? {}).map(([key, value]) => [key, value && decodeURIComponent(value)]),
      );
      return { name, params, query: url.searchParams, path: url.pathname + url.search };
    }
  }
  return { name: "notFound", params: {}, query: url.searchParams, path: url.pathname };
}

export const route = signal(match(new URL(location.href)));

export function navigate(path, { replace = false } = {}) {
  const url = new URL(path, location.href);
  history[replace ? "replaceState" : "pushState"](null, "", url);
  route.value = match(url);
}

addEventListener("popstate", () => {
  route.value = match(new URL(location.href));
});

/** Same-origin link clicks move within the client instead of reloading it. */
export function onLinkClick(event) {
  const link = event.target.closest?.("a[href]");
  if (!link || link.target || link.hasAttribute("download")) return;
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/graphql") || url.pathname.startsWith("/assets/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
}
