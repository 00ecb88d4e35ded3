// Moderation (moderators and admins): the queue of reported targets, open or resolved, each
// with its content, author, reports and state, and the actions on it; the log for admins.
import { useState } from "preact/hooks";
import { mutate, query } from "../api.js";
import { tokenRoles } from "../session.js";
import { displayName, ErrorText, Field, Time, useAction, useLoad, useScreen } from "../ui/common.jsx";
import { REASONS } from "./report-dialog.jsx";

// Built apart from the app (ui/lazy.jsx), this screen keeps its documents with it.
const QUEUE_ITEM = `fragment QueueItem on ModerationQueueItem {
  targetType targetId reportCount reasons firstReportedAt lastReportedAt state text mediaIds suspendedUntil
  message { id roomId seq text createdAt }
  author { id username displayName }
}`;
const MODERATION_QUEUE = `query Queue($status: ReportStatus!, $after: String) {
  moderationQueue(status: $status, first: 20, after: $after) {
    edges { node { ...QueueItem } } pageInfo { hasNextPage endCursor }
  }
} ${QUEUE_ITEM}`;
const MODERATE = `mutation Moderate($input: ModerateInput!) {
  moderate(input: $input) { state resolvedReports suspendedUntil item { ...QueueItem } }
} ${QUEUE_ITEM}`;
const MODERATION_LOG = `query Log($after: String) {
  moderationLog(first: 50, after: $after) {
    edges { node { id at action targetType targetId note actorId } } pageInfo { hasNextPage endCursor }
  }
}`;

// The actions the API takes on each target: content is removed (and, but for a message,
// restored); an account is suspended or warned. A content item also acts on its author.
function actionsFor(item) {
  if (item.targetType === "USER") return ["DISMISS", item.suspendedUntil ? "UNSUSPEND" : "SUSPEND", "WARN"];
  const own = item.state === "VISIBLE" ? ["REMOVE"] : item.targetType === "MESSAGE" ? [] : ["RESTORE"];
  return ["DISMISS", ...own, ...(item.author ? ["WARN", "SUSPEND"] : [])];
}
const LABELS = { DISMISS: "Dismiss", REMOVE: "Remove", RESTORE: "Restore", SUSPEND: "Suspend", UNSUSPEND: "Unsuspend", WARN: "Warn" };
const ON_AUTHOR = new Set(["WARN", "SUSPEND"]);
const MAX_SUSPENSION_HOURS = 24 * 365 * 10;

function Target({ item }) {
  const text = item.message?.text ?? item.text;
  const link =
    item.targetType === "POST" ? `/post/${item.targetId}` : item.targetType === "MESSAGE" && item.message ? `/chat/${item.message.roomId}` : null;
  return (
    <blockquote class="shared">
      {item.author ? (
        <a href={`/u/${encodeURIComponent(item.author.username)}`}>
          <strong>{displayName(item.author)}</strong> <span class="muted">@{item.author.username}</span>
        </a>
      ) : (
        <span class="muted">Deleted account</span>
      )}
      {text ? <p class="text">{text}</p> : <p class="muted">No text</p>}
      {item.mediaIds.length > 0 && <p class="muted">{item.mediaIds.length} media</p>}
      {link && <a href={link}>Open in context</a>}
    </blockquote>
  );
}

function Item({ item, onChange }) {
  const [note, setNote] = useState("");
  const [hours, setHours] = useState("");
  const action = useAction();
  const key = `${item.targetType}-${item.targetId}`;
  const [done, setDone] = useState(null);
  const onAuthor = (name) => item.targetType !== "USER" && ON_AUTHOR.has(name);
  const act = (name) =>
    action.run(null, async () => {
      const [targetType, targetId] = onAuthor(name) ? ["USER", item.author.id] : [item.targetType, item.targetId];
      const input = { targetType, targetId, action: name, note: note.trim() || null };
      if (name === "SUSPEND" && hours) input.durationHours = Number(hours);
      const { moderate } = await mutate(MODERATE, { input });
      setNote("");
      setDone(`${LABELS[name]}${onAuthor(name) ? ` @${item.author.username}` : ""}: done.`);
      // Acting on the author leaves this item as it was.
      if (!onAuthor(name)) onChange({ ...item, ...moderate.item, state: moderate.state, suspendedUntil: moderate.suspendedUntil });
    });
  const actions = actionsFor(item);
  return (
    <li class="card" aria-labelledby={`${key}-t`} data-target-id={item.targetId}>
      <h2 id={`${key}-t`} class="row between">
        <span>
          {item.targetType.toLowerCase()} · {item.reportCount === 1 ? "1 report" : `${item.reportCount} reports`}
        </span>
        <span class="badge">{item.state.toLowerCase()}</span>
      </h2>
      <p>{item.reasons.map((reason) => REASONS[reason] ?? reason).join(", ")}</p>
      <p class="muted">
        First reported <Time at={item.firstReportedAt} />, last <Time at={item.lastReportedAt} />
        {item.suspendedUntil && (
          <>
            {" "}
            · suspended {item.suspendedUntil.startsWith("9999") ? "indefinitely" : <>until {new Date(item.suspendedUntil).toLocaleString()}</>}
          </>
        )}
      </p>
      <Target item={item} />
      <p role="status">{done}</p>
      <Field id={`${key}-note`} label="Note (kept in the log)" value={note} onInput={(event) => setNote(event.currentTarget.value)} />
      {actions.includes("SUSPEND") && (
        <Field id={`${key}-hours`} label="Suspend for (hours; empty: indefinitely)" type="number" min={1} max={MAX_SUSPENSION_HOURS} value={hours} onInput={(event) => setHours(event.currentTarget.value)} />
      )}
      <ErrorText error={action.error} />
      <div class="row">
        {actions.map((name) => (
          <button key={name} type="button" class={name === "DISMISS" ? "" : "primary"} disabled={action.busy} onClick={() => act(name)}>
            {LABELS[name]}
            {onAuthor(name) && " author"}
          </button>
        ))}
      </div>
    </li>
  );
}

function Queue({ status }) {
  const [pages, setPages] = useState([]);
  const { data, error, setData } = useLoad(() => query(MODERATION_QUEUE, { status, after: null }), [status]);
  const connection = data?.moderationQueue;
  const items = [...(connection?.edges ?? []), ...pages.flatMap((page) => page.edges)].map((edge) => edge.node);
  const last = pages.length ? pages[pages.length - 1] : connection;
  const replace = (next) =>
    setData((current) => ({
      moderationQueue: {
        ...current.moderationQueue,
        edges: current.moderationQueue.edges.map((edge) => (edge.node.targetId === next.targetId ? { node: next } : edge)),
      },
    }));
  if (error?.code === "FORBIDDEN") return <p>You are not a moderator.</p>;
  return (
    <>
      <ErrorText error={error} />
      {connection && items.length === 0 && <p class="muted">Nothing here.</p>}
      <ul class="queue" aria-label={status === "OPEN" ? "Open reports" : "Resolved reports"}>
        {items.map((item) => (
          <Item key={`${item.targetType}-${item.targetId}`} item={item} onChange={replace} />
        ))}
      </ul>
      {last?.pageInfo.hasNextPage && (
        <button
          type="button"
          onClick={async () => {
            const next = await query(MODERATION_QUEUE, { status, after: last.pageInfo.endCursor });
            setPages((current) => [...current, next.moderationQueue]);
          }}
        >
          More
        </button>
      )}
    </>
  );
}

function Log() {
  const { data, error } = useLoad(() => query(MODERATION_LOG, { after: null }), []);
  return (
    <>
      <ErrorText error={error} />
      <table class="prefs">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            <th scope="col">Note</th>
          </tr>
        </thead>
        <tbody>
          {data?.moderationLog.edges.map(({ node }) => (
            <tr key={node.id}>
              <td>
                <Time at={node.at} />
              </td>
              <td>{node.action}</td>
              <td>
                {node.targetType.toLowerCase()} {node.targetId}
              </td>
              <td>{node.note}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function Moderation({ tab }) {
  const heading = useScreen("Moderation");
  const admin = tokenRoles().includes("admin");
  const current = tab ?? "open";
  const tabs = [["open", "Open"], ["resolved", "Resolved"], ...(admin ? [["log", "Log"]] : [])];
  return (
    <>
      <h1 tabIndex={-1} ref={heading}>
        Moderation
      </h1>
      <nav class="tabs" aria-label="Moderation sections">
        {tabs.map(([name, label]) => (
          <a key={name} href={name === "open" ? "/moderation" : `/moderation/${name}`} aria-current={current === name ? "page" : undefined}>
            {label}
          </a>
        ))}
      </nav>
      {current === "log" ? <Log /> : <Queue key={current} status={current === "resolved" ? "RESOLVED" : "OPEN"} />}
    </>
  );
}
