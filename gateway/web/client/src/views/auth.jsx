// Signing up and in, and the pages the mailed links open: verify email, reset password.
import { useEffect, useState } from "preact/hooks";
import { mutate, resetSocket } from "../api.js";
import { LOGIN, REGISTER, REQUEST_RESET, RESET_PASSWORD, VERIFY_EMAIL } from "../gql.js";
import { notify } from "../notices.js";
import { navigate, route } from "../router.js";
import { saveAuth, session, updateUser } from "../session.js";
import { ErrorText, Field, useForm, useScreen } from "../ui/common.jsx";

// When a deleted account is erased, kept across its sign-out (in this tab) for the sign-in page.
const ERASURE = "nova.erasure";
export const rememberErasure = (eraseAfter) => sessionStorage.setItem(ERASURE, eraseAfter);
const longDate = (at) => new Date(at).toLocaleString(undefined, { dateStyle: "long", timeStyle: "short" });

function signedIn(payload) {
  saveAuth(payload);
  resetSocket();
  sessionStorage.removeItem(ERASURE);
  if (payload.deletionCancelled) notify("Account deletion cancelled", { ms: 10_000 });
  const next = route.value.query.get("next");
  navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
}

export function Login() {
  const heading = useScreen("Log in");
  const form = useForm({ login: "", password: "" });
  const [erasure] = useState(() => sessionStorage.getItem(ERASURE));
  return (
    <section class="narrow card">
      <h1 tabIndex={-1} ref={heading}>
        Log in to Nova
      </h1>
      {erasure && (
        <p role="status">
          Your account will be erased on <time dateTime={erasure}>{longDate(erasure)}</time>. Sign in before then to
          cancel.
        </p>
      )}
      <form onSubmit={(event) => form.submit(event, async (input) => signedIn((await mutate(LOGIN, { input })).login))}>
        <Field id="login" label="Email or username" autoComplete="username" required {...form.bind("login")} />
        <Field
          id="password"
          label="Password"
          type="password"
          autoComplete="current-password"
          required
          {...form.bind("password")}
        />
        <ErrorText error={form.error} />
        <button type="submit" class="primary wide" disabled={form.busy}>
          Log in
        </button>
      </form>
      <p>
        <a href="/reset-password">Forgot your password?</a>
      </p>
      <p>
        New to Nova? <a href="/signup">Create an account</a>
      </p>
    </section>
  );
}

export function Signup() {
  const heading = useScreen("Sign up");
  const form = useForm({ email: "", username: "", password: "" });
  return (
    <section class="narrow card">
      <h1 tabIndex={-1} ref={heading}>
        Create your account
      </h1>
      <form
        onSubmit={(event) =>
          form.submit(event, async (input) => {
            signedIn((await mutate(REGISTER, { input })).register);
            notify("Welcome to Nova! We sent you an email to verify your address.", { ms: 8000 });
          })
        }
      >
        <Field id="email" label="Email" type="email" autoComplete="email" required {...form.bind("email")} />
        <Field
          id="username"
          label="Username"
          autoComplete="username"
          hint="Letters, digits and underscores; 3 to 30 characters."
          pattern="[A-Za-z0-9_]{3,30}"
          required
          {...form.bind("username")}
        />
        <Field
          id="password"
          label="Password"
          type="password"
          autoComplete="new-password"
          hint="At least 10 characters."
          minLength={10}
          required
          {...form.bind("password")}
        />
        <ErrorText error={form.error} />
        <button type="submit" class="primary wide" disabled={form.busy}>
          Sign up
        </button>
      </form>
      <p>
        Already have an account? <a href="/login">Log in</a>
      </p>
    </section>
  );
}

export function VerifyEmail() {
  const heading = useScreen("Verify email");
  const token = route.value.query.get("token");
  const [state, setState] = useState(token ? "working" : "missing");
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!token) return;
    // The token leaves the address bar (and history) once read.
    history.replaceState(null, "", "/verify-email");
    mutate(VERIFY_EMAIL, { token }).then(
      () => {
        setState("done");
        updateUser({ emailVerified: true });
      },
      (failure) => {
        setError(failure);
        setState("failed");
      },
    );
  }, [token]);
  return (
    <section class="narrow card" aria-live="polite">
      <h1 tabIndex={-1} ref={heading}>
        Verify your email
      </h1>
      {state === "working" && <p>Checking your link…</p>}
      {state === "done" && <p role="status">Your email address is verified. Thank you!</p>}
      {state === "failed" && <ErrorText error={error} />}
      {state === "missing" && <p>Open the link from the email we sent you.</p>}
      <p>
        <a href={session.value ? "/" : "/login"}>{session.value ? "Go to your feed" : "Log in"}</a>
      </p>
    </section>
  );
}

export function ResetPassword() {
  const heading = useScreen("Reset password");
  const [token] = useState(() => route.value.query.get("token"));
  const [done, setDone] = useState(false);
  const form = useForm({ email: "", password: "" });
  useEffect(() => {
    if (token) history.replaceState(null, "", "/reset-password");
  }, [token]);

  if (!token) {
    return (
      <section class="narrow card">
        <h1 tabIndex={-1} ref={heading}>
          Reset your password
        </h1>
        {done ? (
          <p role="status">If an account has that address, we sent it a link to reset the password.</p>
        ) : (
          <form
            onSubmit={(event) =>
              form.submit(event, async ({ email }) => {
                await mutate(REQUEST_RESET, { email });
                setDone(true);
              })
            }
          >
            <Field id="email" label="Email" type="email" autoComplete="email" required {...form.bind("email")} />
            <ErrorText error={form.error} />
            <button type="submit" class="primary wide" disabled={form.busy}>
              Send me a link
            </button>
          </form>
        )}
      </section>
    );
  }
  return (
    <section class="narrow card">
      <h1 tabIndex={-1} ref={heading}>
        Choose a new password
      </h1>
      {done ? (
        <p role="status">
          Your password is changed and every session signed out. <a href="/login">Log in</a>
        </p>
      ) : (
        <form
          onSubmit={(event) =>
            form.submit(event, async ({ password }) => {
              await mutate(RESET_PASSWORD, { token, newPassword: password });
              setDone(true);
            })
          }
        >
          <Field
            id="new-password"
            label="New password"
            type="password"
            autoComplete="new-password"
            minLength={10}
            required
            {...form.bind("password")}
          />
          <ErrorText error={form.error} />
          <button type="submit" class="primary wide" disabled={form.busy}>
            Set password
          </button>
        </form>
      )}
    </section>
  );
}
