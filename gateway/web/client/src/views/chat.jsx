// Chat: the rooms, and one room live: messages in seq order (resumed after a reconnect
// from the last seq seen), typing, who is online, and read markers.
import { useEffect, useRef, useState } from "preact/hooks";
import { ReportButton } from "../ui/report.jsx";
import { connection, live, mutate, query } from "../api.js";
import {
  CREATE_ROOM,
  LEAVE_ROOM,
  MUTE_ROOM,
  MARK_READ,
  MESSAGE_ADDED,
  NOTIFICATION_ADDED,
  OLDER_MESSAGES,
  PRESENCE,
  ROOM_READ,
  PROFILE,
  ROOM_QUERY,
  ROOMS,
  SEND_MESSAGE,
  SEND_TYPING,
  TYPING,
} from "../gql.js";
import { notify } from "../notices.js";
import { navigate } from "../router.js";
import { session } from "../session.js";
import { AttachButton, AttachmentList, useAttachments } from "../ui/attachments.jsx";
import { displayName, ErrorText, newId, Time, useAction, useLoad, useScreen } from "../ui/common.jsx";
import { MediaGrid } from "../ui/media.jsx";

const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 4000;
const MESSAGE_MEDIA_SIZES = "(max-width: 700px) 80vw, 360px";

/** A message as one line: its text, or what it carries. */
function preview(message) {
  if (message.text) return message.text;
  const kinds = message.media?.map((media) => media.kind) ?? [];
  if (kinds.includes("VIDEO")) return "Video";
  if (kinds.length) return kinds.length === 1 ? "Picture" : `${kinds.length} pictures`;
  return "";
}

function roomTitle(room) {
  if (!room) return "Chat";
  if (room.name) return room.name;
  const me = session.value?.user?.id;
  const others = room.members.filter((member) => member.id !== me);
  return others.map(displayName).join(", ") || "Just you";
}

function NewRoom() {
  const [names, setNames] = useState("");
  const [title, setTitle] = useState("");
  const { busy, error, run } = useAction();
  const submit = (event) =>
    run(event, async () => {
      const usernames = names.split(/[\s,]+/).map((name) => name.replace(/^@/, "")).filter(Boolean);
      const ids = [];
      for (const username of usernames) {
        const data = await query(PROFILE, { username });
        if (!data.user) throw new Error(`No one is called @${username}.`);
        ids.push(data.user.id);
      }
      const data = await mutate(CREATE_ROOM, { input: { memberIds: ids, name: title.trim() || null } });
      setNames("");
      setTitle("");
      navigate(`/chat/${data.createRoom.id}`);
    });
  return (
    <form class="card" onSubmit={submit}>
      <h2>New chat</h2>
      <div class="field">
        <label for="room-members">People</label>
        <input
          id="room-members"
          value={names}
          placeholder="@ada, @grace"
          aria-describedby="room-members-hint"
          onInput={(event) => setNames(event.currentTarget.value)}
          required
        />
        <small id="room-members-hint" class="hint">
          Usernames, separated by commas. One person makes a direct chat.
        </small>
      </div>
      <div class="field">
        <label for="room-name">Group name (optional)</label>
        <input id="room-name" value={title} onInput={(event) => setTitle(event.currentTarget.value)} />
      </div>
      <ErrorText error={error} />
      <button type="submit" class="primary" disabled={busy}>
        Start chat
      </button>
    </form>
  );
}

function RoomList({ currentId }) {
  const { data, error, reload } = useLoad(() => query(ROOMS), []);
  // A message notification means a room changed: its unread count and last message.
  useEffect(() => live(NOTIFICATION_ADDED, {}, (d) => d.notificationAdded.kind === "MESSAGE" && reload()), []);
  useEffect(() => {
    if (currentId) reload();
  }, [currentId]);
  const rooms = data?.chatRooms.edges.map((edge) => edge.node) ?? [];
  return (
    <nav aria-label="Chats" class="rooms">
      <ErrorText error={error} />
      {data && rooms.length === 0 && <p class="muted">No chats yet.</p>}
      <ul>
        {rooms.map((room) => (
          <li key={room.id}>
            <a href={`/chat/${room.id}`} aria-current={room.id === currentId ? "page" : undefined}>
              <strong>{roomTitle(room)}</strong>
              {room.unreadCount > 0 && room.id !== currentId && (
                <span class="badge" aria-label={`${room.unreadCount} unread`}>
                  {room.unreadCount}
                </span>
              )}
              {room.lastMessage && <span class="muted preview">{preview(room.lastMessage)}</span>}
            </a>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function useRoomLive(roomId, lastSeq, onMessage, onRead) {
  const [typing, setTyping] = useState({});
  const [online, setOnline] = useState([]);
  useEffect(() => {
    if (lastSeq === null) return undefined;
    // Read again on every (re)subscribe: a reconnect asks only for what came after.
    const variables = { roomId, afterSeq: lastSeq };
    const stops = [
      live(
        MESSAGE_ADDED,
        variables,
        (data) => {
          const message = data.messageAdded;
          if (message.seq > variables.afterSeq) variables.afterSeq = message.seq;
          // Their message is what they were typing.
          const sender = message.sender?.id;
          if (sender) setTyping(({ [sender]: _, ...others }) => others);
          onMessage(message);
        },
        (error) => notify(error.message ?? "The chat's live updates stopped.", { kind: "error" }),
      ),
      live(TYPING, { roomId }, (data) => {
        const user = data.typing.user;
        if (!user || user.id === session.value?.user?.id) return;
        setTyping((current) => ({ ...current, [user.id]: { user, until: Date.now() + TYPING_SHOWN_MS } }));
        setTimeout(() => setTyping((current) => ({ ...current })), TYPING_SHOWN_MS + 50);
      }),
      live(PRESENCE, { roomId }, (data) => setOnline(data.presence.online)),
      live(ROOM_READ, { roomId }, (data) => onRead(data.roomRead)),
    ];
    return () => stops.forEach((stop) => stop());
  }, [roomId, lastSeq === null]);
  const typers = Object.values(typing)
    .filter((entry) => entry.until > Date.now())
    .map((entry) => displayName(entry.user));
  return { typers, online };
}

function Room({ id }) {
  const [room, setRoom] = useState(null);
  const [messages, setMessages] = useState([]);
  const [older, setOlder] = useState(null);
  const [error, setError] = useState(null);
  const [text, setText] = useState("");
  const attachments = useAttachments();
  const composer = useRef(null);
  const lastTyping = useRef(0);
  const list = useRef(null);
  const me = session.value?.user?.id;
  const heading = useScreen(roomTitle(room));

  useEffect(() => {
    setRoom(null);
    setMessages([]);
    setError(null);
    query(ROOM_QUERY, { id }).then(
      (data) => {
        setRoom(data.chatRoom);
        setMessages(data.messages.edges.map((edge) => edge.node));
        setOlder(data.messages.pageInfo.hasPreviousPage ? data.messages.pageInfo.startCursor : null);
      },
      setError,
    );
  }, [id]);

  const lastSeq = room ? Math.max(room.lastSeq, ...messages.map((message) => message.seq), 0) : null;
  const add = (message) =>
    setMessages((current) => {
      const without = current.filter(
        (existing) => existing.seq !== message.seq && existing.clientMessageId !== message.clientMessageId,
      );
      return [...without, message].sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity));
    });
  // A member's read marker moved: "Seen by" follows without a reload.
  const read = (marker) =>
    setRoom((current) =>
      current && {
        ...current,
        readUpTo: [...current.readUpTo.filter((each) => each.user?.id !== marker.user?.id), marker],
      },
    );
  const { typers, online } = useRoomLive(id, room ? room.lastSeq : null, add, read);

  // The newest message seen is read: scroll to it and tell the room.
  const newest = messages.filter((message) => message.seq).at(-1)?.seq ?? 0;
  useEffect(() => {
    list.current?.scrollTo?.({ top: list.current.scrollHeight });
    if (newest && document.visibilityState === "visible") {
      mutate(MARK_READ, { roomId: id, seq: newest }).catch(() => {});
    }
  }, [newest, id]);

  // Media is sent once processed: the room's other members get the message with its
  // pictures or video ready to show (nothing tells them when processing ends).
  const waiting = attachments.uploading || attachments.processing;
  const sendable = (text.trim() || attachments.mediaIds.length > 0) && !waiting;

  async function send(event) {
    event.preventDefault();
    if (!sendable) return;
    const body = text.trim();
    const media = attachments.media;
    const clientMessageId = newId();
    const pending = { id: clientMessageId, clientMessageId, text: body, media, seq: null, pending: true, sender: session.value.user, createdAt: new Date().toISOString() };
    setMessages((current) => [...current, pending]);
    setText("");
    attachments.clear();
    try {
      // Retried with the same clientMessageId, a message is stored once.
      const input = { roomId: id, text: body, clientMessageId, mediaIds: media.map((item) => item.id) };
      const data = await mutate(SEND_MESSAGE, { input });
      add(data.sendMessage);
    } catch (failure) {
      setMessages((current) => current.map((m) => (m.clientMessageId === clientMessageId ? { ...m, failed: failure.message } : m)));
    }
  }

  function onInput(event) {
    setText(event.currentTarget.value);
    if (Date.now() - lastTyping.current > TYPING_EVERY_MS) {
      lastTyping.current = Date.now();
      mutate(SEND_TYPING, { roomId: id }).catch(() => {});
    }
  }

  async function loadOlder() {
    const data = await query(OLDER_MESSAGES, { id, before: older });
    setMessages((current) => [...data.messages.edges.map((edge) => edge.node), ...current]);
    setOlder(data.messages.pageInfo.hasPreviousPage ? data.messages.pageInfo.startCursor : null);
  }

  async function muteRoom() {
    try {
      await mutate(MUTE_ROOM, { id });
      notify("Chat muted: its messages will not notify you. Unmute it in Settings.");
    } catch (failure) {
      notify(failure.message, { kind: "error" });
    }
  }

  async function leave() {
    if (!confirm("Leave this chat?")) return;
    await mutate(LEAVE_ROOM, { roomId: id });
    navigate("/chat");
  }

  if (error) return <ErrorText error={error} />;
  if (!room) return <p class="muted">Loading…</p>;
  const seenBy = (message) =>
    room.readUpTo
      .filter((read) => read.user && read.user.id !== me && read.seq >= message.seq)
      .map((read) => displayName(room.members.find((member) => member.id === read.user.id) ?? read.user));
  const myLast = [...messages].reverse().find((message) => message.sender?.id === me && message.seq);
  const others = online.filter((user) => user.id !== me);

  return (
    <section class="room" aria-labelledby="room-title">
      <header class="row between">
        <div>
          <h1 id="room-title" tabIndex={-1} ref={heading}>
            {roomTitle(room)}
          </h1>
          <p class="muted" aria-live="polite">
            {others.length ? `Online: ${others.map(displayName).join(", ")}` : "No one else online"}
            {connection.value === "reconnecting" && " · Reconnecting…"}
          </p>
        </div>
        <button type="button" class="quiet" onClick={muteRoom}>
          Mute
        </button>
        {room.kind === "GROUP" && (
          <button type="button" class="quiet" onClick={leave}>
            Leave
          </button>
        )}
      </header>
      <div class="messages" ref={list}>
        {older && (
          <button type="button" onClick={loadOlder}>
            Earlier messages
          </button>
        )}
        <ol aria-label="Messages" aria-live="polite" aria-relevant="additions">
          {messages.map((message) => (
            <li key={message.clientMessageId ?? message.id} class={message.sender?.id === me ? "mine" : ""}>
              <span class="sender">{message.senderDeleted ? "Deleted account" : displayName(message.sender)}</span>
              {message.text && <p class="text">{message.text}</p>}
              <MediaGrid media={message.media} sizes={MESSAGE_MEDIA_SIZES} />
              <span class="meta muted">
                {message.failed ? `Not sent: ${message.failed}` : message.pending ? "Sending…" : <Time at={message.createdAt} />}
                {message === myLast && seenBy(message).length > 0 && ` · Seen by ${seenBy(message).join(", ")}`}
              </span>
              {message.seq && !message.deleted && message.sender?.id !== me && (
                <ReportButton targetType="MESSAGE" targetId={message.id} what={`message from ${message.sender?.username ?? "a deleted account"}`} />
              )}
            </li>
          ))}
        </ol>
      </div>
      <p class="typing muted" aria-live="polite">
        {typers.length > 0 && `${typers.join(", ")} ${typers.length === 1 ? "is" : "are"} typing…`}
      </p>
      <form class="composer" onSubmit={send} ref={composer}>
        <AttachmentList attachments={attachments} />
        <div class="row">
          <AttachButton attachments={attachments} id="message-media" label="Attach pictures or a video" class="quiet" dropTarget={composer}>
            <svg class="icon" viewBox="0 0 24 24" width="18" height="18" aria-hidden="true">
              <path d="M8 12.5l6.2-6.2a3 3 0 0 1 4.3 4.3l-7.8 7.8a5 5 0 0 1-7.1-7.1L11 3.9" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" />
            </svg>
            Attach
          </AttachButton>
          <label for="message-text" class="visually-hidden">
            Message
          </label>
          <input id="message-text" class="grow" autoComplete="off" value={text} onInput={onInput} placeholder="Message" />
          <button type="submit" class="primary" disabled={!sendable}>
            Send
          </button>
        </div>
      </form>
    </section>
  );
}

export function Chat({ id }) {
  const heading = useScreen(id ? null : "Chat");
  return (
    <div class={`chat ${id ? "has-room" : ""}`}>
      <aside>
        {!id && (
          <h1 tabIndex={-1} ref={heading}>
            Chat
          </h1>
        )}
        <RoomList currentId={id} />
        {!id && <NewRoom />}
      </aside>
      {id && <Room key={id} id={id} />}
    </div>
  );
}
