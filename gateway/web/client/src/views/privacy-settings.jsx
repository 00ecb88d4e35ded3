// Settings → Your data: an archive of the account (`exportMyData`), followed with
// `dataExport` until its signed download link is ready. And Delete my account
// (`deleteMyAccount`): erased after a grace period, unless its owner signs in again.
import { useEffect, useState } from "preact/hooks";
import { mutate, query } from "../api.js";
import { ErrorText, Field, Time, useAction, useLoad } from "../ui/common.jsx";

// Built apart from the app (ui/lazy.jsx), this screen keeps its documents with it.
const EXPORT = `id status progress createdAt readyAt expiresAt url error sizeBytes`;
const LATEST_EXPORT = `query LatestExport { dataExport { ${EXPORT} } }`;
const EXPORT_BY_ID = `query DataExport($id: ID!) { dataExport(id: $id) { ${EXPORT} } }`;
const START_EXPORT = `mutation StartExport { exportMyData { ${EXPORT} } }`;
const DELETE_ACCOUNT = `mutation DeleteAccount($password: String!) {
  deleteMyAccount(password: $password) { requestedAt eraseAfter }
}`;

const POLL_MS = 2000;
const UNFINISHED = new Set(["QUEUED", "RUNNING"]);
const STATUS = {
  QUEUED: "Waiting to start",
  RUNNING: "Collecting your data",
  READY: "Ready to download",
  FAILED: "Failed",
  EXPIRED: "Expired",
};

const fullDate = (at) => new Date(at).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });

function size(bytes) {
  const [amount, unit] = bytes >= 1e6 ? [bytes / 1e6, "megabyte"] : [bytes / 1e3, "kilobyte"];
  return new Intl.NumberFormat(undefined, { style: "unit", unit, maximumFractionDigits: 1 }).format(amount);
}

// A spent export budget refills over an hour: the client's usual wait for Retry-After
// would only delay saying so. Plain fetch answers RATE_LIMITED at once.
const NO_RETRY = { fetch: (...args) => fetch(...args) };

/** Why starting an export answered the one already shown (one at a time), if it did. */
function reused(answer, shown) {
  if (answer.id !== shown?.id) return null;
  return UNFINISHED.has(answer.status)
    ? "An export is already running: it is shown here."
    : "Your export from less than a day ago is still the latest: download it here.";
}

/** RATE_LIMITED in words, with when to try again. */
function exportError(failure) {
  if (failure?.code !== "RATE_LIMITED") return failure;
  const minutes = Math.max(1, Math.ceil((failure.extensions.retryAfter ?? 60) / 60));
  return new Error(`You have asked for several exports recently: try again in about ${minutes} min.`);
}

function ExportStatus({ item }) {
  const percent = Math.round(item.progress * 100);
  return (
    <div>
      <p>
        <strong aria-live="polite">{STATUS[item.status] ?? item.status}</strong>
        <span class="muted"> · started <Time at={item.createdAt} /></span>
      </p>
      {UNFINISHED.has(item.status) && (
        <p class="row">
          <progress value={item.progress} max="1" aria-label="Export progress" /> {percent} %
        </p>
      )}
      {item.status === "READY" && item.url && (
        <>
          <p>
            <a href={item.url} download>
              Download your data
            </a>
            {item.sizeBytes != null && <span class="muted"> (zip, {size(item.sizeBytes)})</span>}
          </p>
          <p class="muted">
            The link works until <time dateTime={item.expiresAt}>{fullDate(item.expiresAt)}</time>, without signing in:
            keep it private.
          </p>
        </>
      )}
      {item.status === "FAILED" && (
        <p class="error">The export failed: {item.error ?? "unknown reason"}. You can try again.</p>
      )}
      {item.status === "EXPIRED" && <p class="muted">Its archive is deleted; ask for a new one.</p>}
    </div>
  );
}

export function YourData() {
  const { data, error, setData } = useLoad(() => query(LATEST_EXPORT), []);
  const [pollError, setPollError] = useState(null);
  const [polls, setPolls] = useState(0);
  const [note, setNote] = useState(null);
  const action = useAction();
  const current = data?.dataExport ?? null;
  const show = (item) => setData({ dataExport: item });

  // Every couple of seconds while it runs; a failed poll is shown and tried again.
  useEffect(() => {
    if (!current || !UNFINISHED.has(current.status)) return undefined;
    let cancelled = false;
    const timer = setTimeout(() => {
      query(EXPORT_BY_ID, { id: current.id }).then(
        (answer) => {
          if (cancelled) return;
          setPollError(null);
          show(answer.dataExport);
        },
        (failure) => {
          if (cancelled) return;
          setPollError(failure);
          setPolls((count) => count + 1);
        },
      );
    }, POLL_MS);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [current, polls]);

  const start = () =>
    action.run(null, async () => {
      setNote(null);
      const answer = (await mutate(START_EXPORT, {}, NO_RETRY)).exportMyData;
      setNote(reused(answer, current));
      show(answer);
    });

  return (
    <section class="card" aria-labelledby="your-data-title">
      <h2 id="your-data-title">Your data</h2>
      <p>
        Download an archive (a zip) of your profile, posts, comments, likes, follows, messages, notifications, sessions
        and media. Preparing it can take a few minutes; we also email you when it is ready.
      </p>
      {current && <ExportStatus item={current} />}
      {note && <p role="status">{note}</p>}
      <ErrorText error={error ?? pollError ?? exportError(action.error)} />
      <button type="button" disabled={action.busy} onClick={start}>
        Download my data
      </button>
    </section>
  );
}

/** `onDeleted(deletion)`: the server has ended every session of the account. */
export function DeleteAccount({ onDeleted }) {
  const [password, setPassword] = useState("");
  const action = useAction();
  const error =
    action.error?.code === "BAD_USER_INPUT" ? new Error("That password is wrong: nothing was deleted.") : action.error;
  return (
    <form
      class="card"
      aria-labelledby="delete-account-title"
      onSubmit={(event) =>
        action.run(event, async () => {
          onDeleted((await mutate(DELETE_ACCOUNT, { password })).deleteMyAccount);
        })
      }
    >
      <h2 id="delete-account-title">Delete my account</h2>
      <p>
        Fourteen days after you delete your account, we erase it: your profile, posts, comments, likes and follows,
        your pictures and videos, and your personal data. Messages you sent stay in their chats, as from a deleted
        account. To keep a copy, download your data first.
      </p>
      <p>Deleting signs you out everywhere at once. Until the erasure, signing in again cancels it.</p>
      <Field
        id="delete-password"
        label="Your password"
        type="password"
        autoComplete="current-password"
        required
        value={password}
        onInput={(event) => setPassword(event.currentTarget.value)}
      />
      <label class="row">
        <input type="checkbox" required />
        I understand that my account and what I made on Nova are erased for good after 14 days
      </label>
      <ErrorText error={error} />
      <button type="submit" class="danger" disabled={action.busy}>
        Delete my account
      </button>
    </form>
  );
}
