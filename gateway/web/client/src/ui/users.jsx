// People in lists: name, handle and a follow button.
import { useState } from "preact/hooks";
import { mutate } from "../api.js";
import { FOLLOW, UNFOLLOW } from "../gql.js";
import { notify } from "../notices.js";
import { session } from "../session.js";
import { Avatar, displayName } from "./common.jsx";

export function FollowButton({ user, onChange }) {
  const [follows, setFollows] = useState(user.viewerFollows);
  const [busy, setBusy] = useState(false);
  if (!session.value || session.value.user.id === user.id) return null;

  async function toggle() {
    setBusy(true);
    try {
      await mutate(follows ? UNFOLLOW : FOLLOW, { userId: user.id });
      setFollows(!follows);
      onChange?.(!follows);
    } catch (error) {
      notify(error.message, { kind: "error" });
    } finally {
      setBusy(false);
    }
  }

  return (
    <button
      type="button"
      class={follows ? "" : "primary"}
      onClick={toggle}
      disabled={busy}
      aria-label={`${follows ? "Unfollow" : "Follow"} ${displayName(user)}`}
    >
      {follows ? "Following" : "Follow"}
    </button>
  );
}

export function UserRow({ user }) {
  return (
    <li class="user-row">
      <a href={`/u/${encodeURIComponent(user.username)}`}>
        <Avatar user={user} />
        <span>
          <strong>{displayName(user)}</strong> <span class="muted">@{user.username}</span>
        </span>
      </a>
      <FollowButton user={user} />
    </li>
  );
}
