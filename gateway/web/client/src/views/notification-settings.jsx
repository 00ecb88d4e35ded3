// Settings → Notifications: each kind in the app and by email, the digest, and who and
// which chats are muted (`notificationPreferences` and the mutations that change it).
import { mutate, query } from "../api.js";
import { session } from "../session.js";
import { displayName, ErrorText, useAction, useLoad } from "../ui/common.jsx";

// Built apart from the app (ui/lazy.jsx), this screen keeps its documents with it.
const PREFS = `kinds { kind inApp email } emailDigest mutedUsers { id username displayName } mutedRooms { id name kind members { id username } }`;
const PREFERENCES = `query Prefs { notificationPreferences { ${PREFS} } }`;
const UPDATE_PREFERENCES = `mutation UpdatePrefs($input: UpdateNotificationPreferencesInput!) {
  updateNotificationPreferences(input: $input) { ${PREFS} }
}`;
const UNMUTE_USER = `mutation UnmuteUser($id: ID!) { unmuteUser(userId: $id) { ${PREFS} } }`;
const UNMUTE_ROOM = `mutation UnmuteRoom($id: ID!) { unmuteRoom(roomId: $id) { ${PREFS} } }`;

const KINDS = { FOLLOW: "New followers", LIKE: "Likes", COMMENT: "Comments", SHARE: "Shares", MENTION: "Mentions", MESSAGE: "Messages" };

// A direct chat is named by the others in it, as the chat screen names it.
const roomName = (room) =>
  room.name || room.members.filter((member) => member.id !== session.value?.user?.id).map((member) => member.username).join(", ");

export function NotificationSettings() {
  const { data, error, setData, reload } = useLoad(() => query(PREFERENCES), []);
  const action = useAction();
  const prefs = data?.notificationPreferences;
  // Every change is saved at once; the answer is the preferences as they now are. A
  // switch shows its new state while it is saved, and the saved state if that fails.
  const save = (document, variables) =>
    action.run(null, async () => {
      try {
        const answer = await mutate(document, variables);
        setData({ notificationPreferences: Object.values(answer)[0] });
      } catch (failure) {
        reload();
        throw failure;
      }
    });
  const change = (update, document, variables) => {
    setData((current) => ({ notificationPreferences: { ...current.notificationPreferences, ...update } }));
    save(document, variables);
  };
  const setKind = (kind, channel, on) => {
    const next = { kind: kind.kind, inApp: kind.inApp, email: kind.email, [channel]: on };
    const kinds = prefs.kinds.map((each) => (each.kind === next.kind ? next : each));
    change({ kinds }, UPDATE_PREFERENCES, { input: { kinds: [next] } });
  };
  return (
    <section class="card" aria-labelledby="notifications-title">
      <h2 id="notifications-title">Notifications</h2>
      <ErrorText error={error ?? action.error} />
      {prefs && (
        <>
          <table class="prefs">
            <thead>
              <tr>
                <th scope="col">Kind</th>
                <th scope="col">In the app</th>
                <th scope="col">By email</th>
              </tr>
            </thead>
            <tbody>
              {prefs.kinds.map((kind) => (
                <tr key={kind.kind}>
                  <th scope="row">{KINDS[kind.kind] ?? kind.kind}</th>
                  {["inApp", "email"].map((channel) => (
                    <td key={channel}>
                      <input
                        type="checkbox"
                        aria-label={`${KINDS[kind.kind] ?? kind.kind} ${channel === "inApp" ? "in the app" : "by email"}`}
                        checked={kind[channel]}
                        disabled={action.busy}
                        onChange={(event) => setKind(kind, channel, event.currentTarget.checked)}
                      />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          <label class="row">
            <input type="checkbox" checked={prefs.emailDigest} disabled={action.busy} onChange={(event) => {
                const on = event.currentTarget.checked;
                change({ emailDigest: on }, UPDATE_PREFERENCES, { input: { emailDigest: on } });
              }} />
            Send me a digest of notifications by email while I am away
          </label>
          <h3 id="muted-users-title">Muted people</h3>
          <ul class="users" aria-labelledby="muted-users-title">
            {prefs.mutedUsers.map((user) => (
              <li key={user.id} class="row between">
                <a href={`/u/${encodeURIComponent(user.username)}`}>
                  {displayName(user)} <span class="muted">@{user.username}</span>
                </a>
                <button type="button" aria-label={`Unmute ${user.username}`} disabled={action.busy} onClick={() => save(UNMUTE_USER, { id: user.id })}>
                  Unmute
                </button>
              </li>
            ))}
          </ul>
          {prefs.mutedUsers.length === 0 && <p class="muted">No one is muted.</p>}
          <h3 id="muted-rooms-title">Muted chats</h3>
          <ul class="users" aria-labelledby="muted-rooms-title">
            {prefs.mutedRooms.map((room) => (
              <li key={room.id} class="row between">
                <a href={`/chat/${room.id}`}>{roomName(room)}</a>
                <button type="button" aria-label={`Unmute ${roomName(room)}`} disabled={action.busy} onClick={() => save(UNMUTE_ROOM, { id: room.id })}>
                  Unmute
                </button>
              </li>
            ))}
          </ul>
          {prefs.mutedRooms.length === 0 && <p class="muted">No chat is muted.</p>}
        </>
      )}
    </section>
  );
}
