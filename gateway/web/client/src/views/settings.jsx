// Settings: profile, email verification, notifications, sessions (sign any of them out),
// password, your data, deleting the account.
import { useState } from "preact/hooks";
import { mutate, query, resetSocket } from "../api.js";
import { CHANGE_PASSWORD, RESEND_VERIFICATION, REVOKE_SESSION, SESSIONS, UPDATE_PROFILE } from "../gql.js";
import { notify } from "../notices.js";
import { navigate } from "../router.js";
import { clearSession, session, updateUser } from "../session.js";
import { ErrorText, Field, Time, useAction, useForm, useLoad, useScreen } from "../ui/common.jsx";
import { signOut } from "../signout.js";
import { Lazy } from "../ui/lazy.jsx";
import { rememberErasure } from "./auth.jsx";

function ProfileForm() {
  const me = session.value.user;
  const form = useForm({ displayName: me.displayName ?? "", bio: me.bio ?? "", avatarUrl: me.avatarUrl ?? "" });
  return (
    <form
      class="card"
      aria-labelledby="profile-title"
      onSubmit={(event) =>
        form.submit(event, async (values) => {
          const input = {
            displayName: values.displayName.trim() || null,
            bio: values.bio.trim() || null,
            avatarUrl: values.avatarUrl.trim() || null,
          };
          updateUser((await mutate(UPDATE_PROFILE, { input })).updateProfile);
          notify("Profile saved.");
        })
      }
    >
      <h2 id="profile-title">Profile</h2>
      <Field id="display-name" label="Display name" maxLength={50} {...form.bind("displayName")} />
      <Field id="bio" label="Bio" multiline rows={3} maxLength={500} {...form.bind("bio")} />
      <Field id="avatar-url" label="Avatar URL" type="url" {...form.bind("avatarUrl")} />
      <ErrorText error={form.error} />
      <button type="submit" class="primary" disabled={form.busy}>
        Save profile
      </button>
    </form>
  );
}

function EmailStatus() {
  const me = session.value.user;
  const action = useAction();
  return (
    <section class="card" aria-labelledby="email-title">
      <h2 id="email-title">Email</h2>
      <p>
        {me.email} · {me.emailVerified ? "verified" : "not verified yet"}
      </p>
      {!me.emailVerified && (
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            action.run(null, async () => {
              await mutate(RESEND_VERIFICATION);
              notify("We sent you a new verification link.");
            })
          }
        >
          Send the verification link again
        </button>
      )}
      <ErrorText error={action.error} />
    </section>
  );
}

function Sessions() {
  const { data, error, reload } = useLoad(() => query(SESSIONS), []);
  const action = useAction();
  const sessions = data?.sessions.edges.map((edge) => edge.node) ?? [];
  return (
    <section class="card" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Where you're signed in</h2>
      <ErrorText error={error ?? action.error} />
      <ul class="sessions">
        {sessions.map((item) => (
          <li key={item.id}>
            <div>
              <strong>{item.userAgent || "Unknown device"}</strong>
              {item.current && <span class="badge"> This device</span>}
              <p class="muted">
                {item.ip ?? "unknown address"} · last used <Time at={item.lastUsedAt} />
              </p>
            </div>
            <button
              type="button"
              disabled={action.busy}
              aria-label={item.current ? "Sign out of this device" : `Sign out ${item.userAgent || "device"} (${item.ip ?? "unknown address"})`}
              onClick={() =>
                action.run(null, async () => {
                  if (item.current) return signOut();
                  await mutate(REVOKE_SESSION, { id: item.id });
                  notify("That session is signed out.");
                  reload();
                })
              }
            >
              Sign out
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function PasswordForm() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const action = useAction();
  return (
    <form
      class="card"
      aria-labelledby="password-title"
      onSubmit={(event) =>
        action.run(event, async () => {
          await mutate(CHANGE_PASSWORD, { currentPassword: current, newPassword: next });
          setCurrent("");
          setNext("");
          notify("Password changed. Your other sessions are signed out.");
        })
      }
    >
      <h2 id="password-title">Password</h2>
      <Field id="current-password" label="Current password" type="password" autoComplete="current-password" required value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
      <Field id="new-password" label="New password" type="password" autoComplete="new-password" minLength={10} required value={next} onInput={(e) => setNext(e.currentTarget.value)} />
      <ErrorText error={action.error} />
      <button type="submit" class="primary" disabled={action.busy}>
        Change password
      </button>
    </form>
  );
}

// The deletion has ended every session on the server, so signOut's logout would only be
// refused: what is left is this browser's copy. The sign-in page tells when the erasure is.
function signedOutByDeletion({ eraseAfter }) {
  rememberErasure(eraseAfter);
  clearSession();
  resetSocket();
  navigate("/login");
}

export function Settings() {
  const heading = useScreen("Settings");
  return (
    <>
      <h1 tabIndex={-1} ref={heading}>
        Settings
      </h1>
      <ProfileForm />
      <EmailStatus />
      <Lazy screen="notificationSettings" component="NotificationSettings" />
      <Sessions />
      <PasswordForm />
      <Lazy screen="privacySettings" component="YourData" />
      <section class="card">
        <h2>Sign out</h2>
        <button type="button" onClick={signOut}>
          Sign out of Nova
        </button>
      </section>
      <Lazy screen="privacySettings" component="DeleteAccount" onDeleted={signedOutByDeletion} />
    </>
  );
}
