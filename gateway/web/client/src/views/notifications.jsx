// Notifications, newest first; opening the screen marks them read.
import { useEffect } from "preact/hooks";
import { mutate, query } from "../api.js";
import { arrived, unread } from "../badge.js";
import { MARK_NOTIFICATIONS_READ, NOTIFICATIONS } from "../gql.js";
import { displayName, ErrorText, Time, useLoad, useScreen } from "../ui/common.jsx";

const WHAT = {
  FOLLOW: () => "followed you",
  LIKE: (n) => "liked your post",
  COMMENT: () => "commented on your post",
  SHARE: () => "shared your post",
  MENTION: () => "mentioned you",
  MESSAGE: (n) => (n.messageCount > 1 ? `sent you ${n.messageCount} messages` : "sent you a message"),
};

function link(notification) {
  if (notification.room) return `/chat/${notification.room.id}`;
  if (notification.post) return `/post/${notification.post.id}`;
  if (notification.actor) return `/u/${encodeURIComponent(notification.actor.username)}`;
  return "/notifications";
}

function Item({ notification }) {
  const others = notification.actorCount - 1;
  return (
    <li class={notification.read ? "" : "unread"}>
      <a href={link(notification)}>
        <strong>{displayName(notification.actor)}</strong>
        {others > 0 && ` and ${others} ${others === 1 ? "other" : "others"}`} {WHAT[notification.kind]?.(notification) ?? ""}
        {notification.post && <span class="muted preview"> “{notification.post.text}”</span>}
      </a>{" "}
      <Time at={notification.createdAt} />
      {!notification.read && <span class="visually-hidden"> (unread)</span>}
    </li>
  );
}

export function Notifications() {
  const heading = useScreen("Notifications");
  const { data, error } = useLoad(() => query(NOTIFICATIONS), []);
  useEffect(() => {
    mutate(MARK_NOTIFICATIONS_READ).then(() => (unread.value = 0), () => {});
  }, [arrived.value.length]);
  const loaded = data?.notifications.edges.map((edge) => edge.node) ?? [];
  const known = new Set(loaded.map((n) => n.id));
  const items = [...arrived.value.filter((n) => !known.has(n.id)), ...loaded];
  return (
    <>
      <h1 tabIndex={-1} ref={heading}>
        Notifications
      </h1>
      <ErrorText error={error} />
      {data && items.length === 0 && <p class="muted">Nothing yet.</p>}
      <ul class="notifications card" aria-live="polite">
        {items.map((notification) => (
          <Item key={notification.id} notification={notification} />
        ))}
      </ul>
    </>
  );
}
