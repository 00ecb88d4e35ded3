// Nova's API as a client sees it: urql over HTTP with automatic persisted queries and
// token refresh, graphql-ws for everything live. No document cache: views hold their
// own state and patch it from mutation results, so a like never refetches a feed.
import { Client, fetchExchange, subscriptionExchange } from "@urql/core";
import { authExchange } from "@urql/exchange-auth";
import { persistedExchange } from "@urql/exchange-persisted";
import { signal } from "@preact/signals";
import { createClient as createSocket } from "graphql-ws";
import { notify } from "./notices.js";
import { expiresSoon, refreshSession, session } from "./session.js";

const MAX_RATE_LIMIT_RETRIES = 3;
const MAX_RETRY_AFTER_S = 30;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** fetch that waits out a 429 for as long as `Retry-After` says, a few times. */
async function fetchWithRetryAfter(input, init) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(input, init);
    if (response.status !== 429 || attempt >= MAX_RATE_LIMIT_RETRIES) return response;
    const seconds = Math.min(Number(response.headers.get("Retry-After")) || 1, MAX_RETRY_AFTER_S);
    notify(`Too many requests: trying again in ${seconds} s.`, { kind: "warning", ms: seconds * 1000 });
    await sleep(seconds * 1000);
  }
}

function sentWithToken(operation) {
  const headers = operation.context.fetchOptions?.headers ?? {};
  return "Authorization" in headers;
}

const auth = authExchange(async (utils) => ({
  addAuthToOperation(operation) {
    const token = session.value?.accessToken;
    return token ? utils.appendHeaders(operation, { Authorization: `Bearer ${token}` }) : operation;
  },
  willAuthError() {
    return expiresSoon();
  },
  didAuthError(error, operation) {
    const refused =
      error.response?.status === 401 ||
      error.graphQLErrors.some((e) => e.extensions?.code === "UNAUTHENTICATED");
    return refused && sentWithToken(operation);
  },
  async refreshAuth() {
    await refreshSession();
  },
}));

// The live socket: signs in with the current token when it (re)connects. A socket refused
// with 4403 (an expired token) refreshes first; subscriptions resume by themselves.
let lastClose = null;
/** "idle" (no live parts open), "connecting", "connected" or "reconnecting". */
export const connection = signal("idle");
export const socket = createSocket({
  url: new URL("/graphql", location.href).toString().replace(/^http/, "ws"),
  lazy: true,
  lazyCloseTimeout: 3000,
  retryAttempts: Infinity,
  shouldRetry: () => true,
  keepAlive: 20_000,
  connectionParams: async () => {
    if (lastClose === 4403 || expiresSoon()) await refreshSession();
    lastClose = null;
    const token = session.value?.accessToken;
    return token ? { authorization: `Bearer ${token}` } : {};
  },
  on: {
    connecting: () => {
      connection.value = connection.value === "idle" ? "connecting" : "reconnecting";
    },
    connected: () => {
      connection.value = "connected";
    },
    closed: (event) => {
      lastClose = event?.code ?? null;
      // 1000 after the last subscription ended: nothing live is open.
      connection.value = event?.code === 1000 ? "idle" : "reconnecting";
    },
  },
});

/** Reconnect the socket as whoever is signed in now. */
export function resetSocket() {
  socket.terminate();
}

export const client = new Client({
  url: "/graphql",
  fetch: fetchWithRetryAfter,
  requestPolicy: "network-only",
  preferGetMethod: false,
  fetchOptions: { headers: { Accept: "application/graphql-response+json, application/json;q=0.9" } },
  exchanges: [
    auth,
    persistedExchange({ preferGetForPersistedQueries: true, enableForMutation: true }),
    fetchExchange,
    subscriptionExchange({
      forwardSubscription: (request) => ({
        subscribe: (sink) => ({ unsubscribe: socket.subscribe(request, sink) }),
      }),
    }),
  ],
});

/** An error a person can read, with its code (from Nova's `extensions.code`). */
export class ApiError extends Error {
  constructor(combined) {
    const first = combined.graphQLErrors?.[0];
    super(first?.message ?? (combined.networkError ? "Nova cannot be reached." : combined.message));
    this.code = first?.extensions?.code ?? (combined.networkError ? "NETWORK" : "UNKNOWN");
    this.extensions = first?.extensions ?? {};
  }
}

let answered;
/**
 * Settles when the page's first request has been answered (or after a second): work the
 * screen does not show yet (the badge, the live socket, the account's details) waits for
 * it, so the screen's own data is not queued behind it on a busy server.
 */
export const firstAnswer = new Promise((resolve) => {
  answered = resolve;
  setTimeout(resolve, 1000);
});

/** Run `start` once the first answer is in; returns what stops it (before or after). */
export function afterFirstAnswer(start) {
  let stop = null;
  let cancelled = false;
  firstAnswer.then(() => {
    if (!cancelled) stop = start() ?? null;
  });
  return () => {
    cancelled = true;
    stop?.();
  };
}

async function run(promise) {
  const result = await promise;
  answered();
  if (result.error) throw new ApiError(result.error);
  return result.data;
}

export const query = (document, variables = {}) => run(client.query(document, variables).toPromise());
export const mutate = (document, variables = {}, context = undefined) =>
  run(client.mutation(document, variables, context).toPromise());

/**
 * Subscribe over the socket; `onData` gets each result's data. Variables are read each
 * time the socket (re)subscribes, so a caller may move a cursor (`afterSeq`) forward.
 * Returns the function that ends the subscription.
 */
export function live(document, variables, onData, onError = () => {}) {
  return socket.subscribe(
    { query: document, variables },
    {
      next: (result) => {
        if (result.data) onData(result.data);
        if (result.errors) onError(result.errors[0]);
      },
      error: (error) => onError(error),
      complete: () => {},
    },
  );
}
