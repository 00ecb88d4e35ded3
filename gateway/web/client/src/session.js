// The signed-in session: tokens in localStorage (shared with GraphiQL), refreshed before
// they expire and when the server says UNAUTHENTICATED. One refresh at a time.
import { signal } from "@preact/signals";

const KEY = "nova.session";
// Refresh this long before the access token expires.
const EARLY_MS = 60_000;

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

/** The current session: {accessToken, refreshToken, expiresAt, user} or null. */
export const session = signal(load());

// Another tab signed in, refreshed or out.
addEventListener("storage", (event) => {
  if (event.key === KEY) session.value = load();
});

export function saveAuth(payload) {
  // A refresh names fewer of the user's fields than sign-in: keep the others.
  const known = session.value?.user?.id === payload.user.id ? session.value.user : {};
  const next = {
    accessToken: payload.accessToken,
    refreshToken: payload.refreshToken,
    expiresAt: Date.now() + payload.expiresIn * 1000,
    user: { ...known, ...payload.user },
  };
  localStorage.setItem(KEY, JSON.stringify(next));
  session.value = next;
}

export function updateUser(user) {
  // What is stored may be newer than what this tab holds (another tab refreshed the
  // tokens a moment ago): write the user into that, never stale tokens over it.
  const current = load() ?? session.value;
  if (!current) return;
  const next = { ...current, user: { ...current.user, ...user } };
  localStorage.setItem(KEY, JSON.stringify(next));
  session.value = next;
}

export function clearSession() {
  localStorage.removeItem(KEY);
  session.value = null;
}

export function expiresSoon() {
  const current = session.value;
  return Boolean(current && current.expiresAt - Date.now() < EARLY_MS);
}

const REFRESH = `mutation Refresh($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) {
    accessToken refreshToken expiresIn user { id username displayName avatarUrl emailVerified }
  }
}`;

let inFlight = null;

/** Trade the refresh token for new tokens; signs out when the server refuses it. */
export function refreshSession() {
  if (inFlight) return inFlight;
  const current = session.value;
  if (!current) return Promise.resolve(false);
  inFlight = (async () => {
    try {
      const response = await fetch("/graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/graphql-response+json" },
        body: JSON.stringify({ query: REFRESH, variables: { refreshToken: current.refreshToken } }),
      });
      const body = await response.json().catch(() => ({}));
      if (body.data?.refreshToken) {
        saveAuth(body.data.refreshToken);
        return true;
      }
      const code = body.errors?.[0]?.extensions?.code;
      // A refused refresh token ends the session; an outage keeps it for a later try.
      if (code === "UNAUTHENTICATED" || code === "BAD_USER_INPUT") clearSession();
      return false;
    } catch {
      return false;
    } finally {
      inFlight = null;
    }
  })();
  return inFlight;
}

/**
 * The roles the access token carries, which is what the server authorizes by (`me.roles`
 * comes from a cache that a role granted at the command line may not have reached yet).
 */
export function tokenRoles() {
  try {
    const claims = session.value.accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(claims)).roles ?? [];
  } catch {
    return [];
  }
}
