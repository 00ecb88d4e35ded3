// Short messages for the person using the client, read out by screen readers.
import { signal } from "@preact/signals";

export const notices = signal([]);
let next = 1;

export function notify(text, { kind = "info", ms = 5000 } = {}) {
  const id = next++;
  notices.value = [...notices.value, { id, text, kind }];
  if (ms) setTimeout(() => dismiss(id), ms);
  return id;
}

export function dismiss(id) {
  notices.value = notices.value.filter((notice) => notice.id !== id);
}
