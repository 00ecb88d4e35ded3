// The frame around every screen: navigation with the live notification badge, notices,
// and which screen the address shows. Screens for signed-in people send others to log in.
import { useEffect } from "preact/hooks";
import { afterFirstAnswer, connection, query } from "./api.js";
import { stopWatchingNotifications, unread, watchNotifications } from "./badge.js";
import { dismiss, notices } from "./notices.js";
import { navigate, onLinkClick, route } from "./router.js";
import { ME_QUERY } from "./gql.js";
import { session, tokenRoles, updateUser } from "./session.js";
import { Login, ResetPassword, Signup, VerifyEmail } from "./views/auth.jsx";
import { Chat } from "./views/chat.jsx";
import { Home } from "./views/feed.jsx";
import { Notifications } from "./views/notifications.jsx";
import { PostPage } from "./views/post.jsx";
import { Profile } from "./views/profile.jsx";
import { Search } from "./views/search.jsx";
import { Settings } from "./views/settings.jsx";
import { Lazy } from "./ui/lazy.jsx";

// Moderators and admins see the moderation screen (the server decides what they may do).
const isModerator = () => tokenRoles().some((role) => role === "moderator" || role === "admin");

const OPEN = new Set(["login", "signup", "verifyEmail", "resetPassword", "notFound"]);

function Nav() {
  const me = session.value?.user;
  const here = route.value.name;
  const current = (name) => (here === name ? "page" : undefined);
  return (
    <header class="top">
      <nav aria-label="Main" class="bar">
        <a href="/" class="brand" aria-current={current("home")}>
          Nova
        </a>
        {me ? (
          <>
            <a href="/search" aria-current={current("search")}>
              Search
            </a>
            <a href="/chat" aria-current={current("chat")}>
              Chat
            </a>
            <a href="/notifications" aria-current={current("notifications")}>
              Notifications
              {unread.value > 0 && (
                <span class="badge" aria-label={`${unread.value} unread`} data-testid="unread-badge">
                  {unread.value}
                </span>
              )}
            </a>
            <a href={`/u/${encodeURIComponent(me.username)}`} aria-current={here === "profile" && route.value.params.username === me.username ? "page" : undefined}>
              Profile
            </a>
            <a href="/settings" aria-current={current("settings")}>
              Settings
            </a>
            {isModerator() && (
              <a href="/moderation" aria-current={current("moderation")}>
                Moderation
              </a>
            )}
          </>
        ) : (
          <>
            <a href="/login" aria-current={current("login")}>
              Log in
            </a>
            <a href="/signup" aria-current={current("signup")}>
              Sign up
            </a>
          </>
        )}
      </nav>
      {connection.value === "reconnecting" && (
        <p class="offline" role="status">
          Connection lost: reconnecting…
        </p>
      )}
    </header>
  );
}

function Notices() {
  return (
    <div class="notices" role="status" aria-live="polite">
      {notices.value.map((notice) => (
        <p key={notice.id} class={`notice ${notice.kind}`}>
          {notice.text}{" "}
          <button type="button" class="quiet" aria-label="Dismiss" onClick={() => dismiss(notice.id)}>
            ×
          </button>
        </p>
      ))}
    </div>
  );
}

function Screen() {
  const { name, params } = route.value;
  switch (name) {
    case "home":
      return <Home />;
    case "login":
      return <Login />;
    case "signup":
      return <Signup />;
    case "verifyEmail":
      return <VerifyEmail />;
    case "resetPassword":
      return <ResetPassword />;
    case "post":
      return <PostPage key={params.id} id={params.id} />;
    case "profile":
      return <Profile username={params.username} tab={params.tab} />;
    case "search":
      return <Search />;
    case "chat":
      return <Chat id={params.id} />;
    case "notifications":
      return <Notifications />;
    case "settings":
      return <Settings />;
    case "moderation":
      return <Lazy screen="moderation" component="Moderation" tab={params.tab} />;
    default:
      return (
        <section class="narrow card">
          <h1>Not found</h1>
          <p>
            Nothing lives here. <a href="/">Go home</a>
          </p>
        </section>
      );
  }
}

export function App() {
  const me = session.value?.user?.id ?? null;
  const needsSession = !OPEN.has(route.value.name);
  useEffect(() => {
    if (!me) return undefined;
    return afterFirstAnswer(() => {
      watchNotifications();
      // The account as its owner sees it (email and all): what sign-in returned may lack
      // the owner-only fields, and another device may have changed the profile since.
      query(ME_QUERY).then(
        (data) => data.me && updateUser(data.me),
        () => {},
      );
      return stopWatchingNotifications;
    });
  }, [me]);
  useEffect(() => {
    if (!me && needsSession) {
      navigate(`/login?next=${encodeURIComponent(route.value.path)}`, { replace: true });
    }
  }, [me, needsSession]);
  return (
    <div onClick={onLinkClick}>
      <a class="skip" href="#main" onClick={(event) => (event.preventDefault(), document.getElementById("main").focus())}>
        Skip to content
      </a>
      <Nav />
      <main id="main" tabIndex={-1}>
        {me || !needsSession ? <Screen /> : null}
      </main>
      <Notices />
    </div>
  );
}
