// Pictures and videos being attached to a post, a message or a story: picked (or dropped),
// uploaded with progress as soon as they are picked, followed while they process, removable
// until sent. Up to 4 pictures, or one video alone.
import { useEffect, useRef, useState } from "preact/hooks";
import { ACCEPTED, kindOf, MAX_PICTURES, selectable, upload, whenProcessed } from "../media.js";
import { newId } from "./common.jsx";

/**
 * The attachments' state. `limit` caps how many (a story takes one). Each item is
 * {key, name, kind, progress, media, error}; `mediaIds` are those uploaded, `uploading`
 * whether any is still on its way, `processing` whether any uploaded one is not READY.
 */
export function useAttachments({ limit = MAX_PICTURES } = {}) {
  const [items, setItems] = useState([]);
  const [refused, setRefused] = useState(null);
  const stops = useRef(new Map());
  useEffect(() => () => stops.current.forEach((stop) => stop()), []);

  const change = (key, fields) =>
    setItems((current) => current.map((item) => (item.key === key ? { ...item, ...fields } : item)));

  function follow(key, media) {
    change(key, { media });
    stops.current.set(key, whenProcessed(media, (now) => {
      change(key, now.status === "FAILED" ? { media: now, error: now.error || "It could not be processed." } : { media: now });
      if (now.status === "READY" || now.status === "FAILED") stops.current.get(key)?.();
    }));
  }

  function add(files) {
    const kept = items.filter((item) => !item.error && item.kind);
    const { accepted, refused: why } = selectable(kept, [...files]);
    const room = Math.max(limit - kept.length, 0);
    setRefused(why ?? (accepted.length > room ? `Up to ${limit === 1 ? "one picture or video" : `${limit} pictures`}.` : null));
    for (const file of accepted.slice(0, room)) {
      const key = newId();
      setItems((current) => [...current, { key, name: file.name, kind: kindOf(file), progress: 0 }]);
      upload(file, (progress) => change(key, { progress })).then(
        (media) => follow(key, media),
        (failure) => change(key, { error: failure.message }),
      );
    }
  }

  function remove(key) {
    stops.current.get(key)?.();
    stops.current.delete(key);
    setItems((current) => current.filter((item) => item.key !== key));
    setRefused(null);
  }

  function clear() {
    stops.current.forEach((stop) => stop());
    stops.current.clear();
    setItems([]);
    setRefused(null);
  }

  const sendable = items.filter((item) => item.media && !item.error);
  return {
    items,
    refused,
    add,
    remove,
    clear,
    mediaIds: sendable.map((item) => item.media.id),
    media: sendable.map((item) => item.media),
    uploading: items.some((item) => !item.media && !item.error),
    processing: sendable.some((item) => item.media.status !== "READY"),
    full: sendable.some((item) => item.kind === "VIDEO") || items.filter((item) => !item.error).length >= limit,
  };
}

function Status({ item }) {
  if (item.error) return <span class="error">{item.error}</span>;
  if (!item.media) {
    return <progress max="1" value={item.progress} aria-label={`Uploading ${item.name}`} />;
  }
  if (item.media.status !== "READY") return <span class="muted">Uploaded, processing…</span>;
  return <span class="muted">Ready</span>;
}

function Thumb({ media }) {
  const thumb = media?.status === "READY" && (media.posterUrl ?? media.variants.find((v) => v.name === "thumb")?.url);
  if (!thumb) return <span class="thumb" aria-hidden="true" />;
  return <img class="thumb" src={thumb} alt="" width="40" height="40" />;
}

/** The attachments as a list, each with its state and a button that removes it. */
export function AttachmentList({ attachments, label = "Attachments" }) {
  const { items, refused, remove } = attachments;
  return (
    <>
      {items.length > 0 && (
        <ul class="uploads" aria-label={label}>
          {items.map((item) => (
            <li key={item.key}>
              <Thumb media={item.media} />
              <span class="grow name">{item.name}</span>
              <Status item={item} />
              <button type="button" class="quiet" aria-label={`Remove ${item.name}`} onClick={() => remove(item.key)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      )}
      {refused && (
        <p class="error" role="alert">
          {refused}
        </p>
      )}
    </>
  );
}

/**
 * A button that opens the file picker (the input itself is hidden, found by its id), and
 * lets files be dropped on `dropTarget` (a ref) too.
 */
export function AttachButton({ attachments, id, label, children, class: className = "", dropTarget }) {
  const input = useRef(null);
  const add = useRef(attachments.add);
  add.current = attachments.add;
  useEffect(() => {
    const target = dropTarget?.current;
    if (!target) return undefined;
    const over = (event) => {
      if (![...(event.dataTransfer?.types ?? [])].includes("Files")) return;
      event.preventDefault();
      target.classList.add("dropping");
    };
    const leave = () => target.classList.remove("dropping");
    const drop = (event) => {
      leave();
      if (!event.dataTransfer?.files?.length) return;
      event.preventDefault();
      add.current(event.dataTransfer.files);
    };
    target.addEventListener("dragover", over);
    target.addEventListener("dragleave", leave);
    target.addEventListener("drop", drop);
    return () => {
      target.removeEventListener("dragover", over);
      target.removeEventListener("dragleave", leave);
      target.removeEventListener("drop", drop);
    };
  }, [dropTarget]);
  return (
    <>
      <input
        ref={input}
        id={id}
        type="file"
        accept={ACCEPTED.join(",")}
        multiple
        hidden
        onChange={(event) => {
          attachments.add(event.currentTarget.files);
          event.currentTarget.value = "";
        }}
      />
      <button
        type="button"
        class={className}
        aria-label={label}
        disabled={attachments.full}
        onClick={() => input.current?.click()}
      >
        {children ?? label}
      </button>
    </>
  );
}
