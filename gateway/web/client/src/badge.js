// The unread notification count in the navigation, kept live by `notificationAdded`.
import { signal } from "@preact/signals";
import { live, query } from "./api.js";
import { NOTIFICATION_ADDED, UNREAD_COUNT } from "./gql.js";

export const unread = signal(0);
/** The newest notifications received live, for the notifications screen. */
export const arrived = signal([]);

let stop = null;

export function watchNotifications() {
  stop?.();
  query(UNREAD_COUNT).then((data) => (unread.value = data.unreadNotificationCount), () => {});
  stop = live(NOTIFICATION_ADDED, {}, (data) => {
    unread.value += 1;
    const added = data.notificationAdded;
    arrived.value = [added, ...arrived.value.filter((n) => n.id !== added.id)].slice(0, 50);
  });
}

export function stopWatchingNotifications() {
  stop?.();
  stop = null;
  unread.value = 0;
  arrived.value = [];
}
