// Small pieces every screen uses.
import { useEffect, useRef, useState } from "preact/hooks";

export function displayName(user) {
  return user ? user.displayName || user.username : "Someone";
}

export function Avatar({ user, size = 40 }) {
  const name = displayName(user);
  if (user?.avatarUrl) {
    return <img class="avatar" src={user.avatarUrl} alt="" width={size} height={size} />;
  }
  return (
    <span class="avatar" aria-hidden="true" style={{ width: `${size}px`, height: `${size}px` }}>
      {name.slice(0, 1).toUpperCase()}
    </span>
  );
}

const RELATIVE = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [7, "day"],
  [4.35, "week"],
  [12, "month"],
  [Infinity, "year"],
];

export function Time({ at }) {
  const date = new Date(at);
  let amount = (date.getTime() - Date.now()) / 1000;
  let unit = "second";
  for (const [size, name] of STEPS) {
    unit = name;
    if (Math.abs(amount) < size) break;
    amount /= size;
  }
  return (
    <time dateTime={date.toISOString()} title={date.toLocaleString()}>
      {RELATIVE.format(Math.round(amount), unit)}
    </time>
  );
}

/** A labelled input; every control in the client has a visible label. */
export function Field({ label, id, hint, ...input }) {
  const hintId = hint ? `${id}-hint` : undefined;
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {input.multiline ? (
        <textarea id={id} aria-describedby={hintId} {...input} multiline={undefined} />
      ) : (
        <input id={id} aria-describedby={hintId} {...input} />
      )}
      {hint && (
        <small id={hintId} class="hint">
          {hint}
        </small>
      )}
    </div>
  );
}

export function ErrorText({ error }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message ?? String(error)}
    </p>
  );
}

/** Run `load` when `deps` change; gives {data, error, loading, reload, setData}. */
/**
 * A form's submit: `run(event, action)` prevents the page load, marks the form busy and
 * keeps the action's error for `ErrorText`, so every form behaves the same way.
 */
export function useAction() {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (event, action) => {
    event?.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };
  return { error, busy, run };
}

/** `useAction` with the form's fields: `bind(name)` wires an input, `submit` gets the values. */
export function useForm(initial) {
  const [values, setValues] = useState(initial);
  const action = useAction();
  const bind = (name) => ({
    name,
    value: values[name],
    onInput: (event) => setValues((current) => ({ ...current, [name]: event.currentTarget.value })),
  });
  const submit = (event, act) => action.run(event, () => act(values));
  return { values, setValues, bind, error: action.error, busy: action.busy, submit };
}

export function useLoad(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = () => {
    const mine = ++generation.current;
    setState((previous) => ({ ...previous, loading: true, error: null }));
    load().then(
      (data) => mine === generation.current && setState({ data, error: null, loading: false }),
      (error) => mine === generation.current && setState({ data: null, error, loading: false }),
    );
  };
  useEffect(run, deps);
  return {
    ...state,
    reload: run,
    setData: (update) =>
      setState((previous) => ({
        ...previous,
        data: typeof update === "function" ? update(previous.data) : update,
      })),
  };
}

/** Calls `onVisible` when the element scrolls into view: infinite lists. */
export function useWhenVisible(onVisible, enabled) {
  const ref = useRef(null);
  useEffect(() => {
    if (!enabled || !ref.current || typeof IntersectionObserver === "undefined") return undefined;
    const observer = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) onVisible();
    }, { rootMargin: "400px" });
    observer.observe(ref.current);
    return () => observer.disconnect();
  }, [enabled, onVisible]);
  return ref;
}

export function newId() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/**
 * Sets the document title and focuses the screen's heading, for screen readers. A null
 * title leaves both to a nested screen.
 */
export function useScreen(title) {
  const heading = useRef(null);
  useEffect(() => {
    if (title === null) return;
    document.title = title ? `${title} · Nova` : "Nova";
    heading.current?.focus({ preventScroll: true });
  }, [title]);
  return heading;
}

/**
 * A modal <dialog>, open while mounted (the browser keeps focus in it); Escape calls
 * `onClose`, and focus goes back where it was when it closes.
 */
export function Dialog({ onClose, children, ...props }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    const opener = document.activeElement;
    dialog.showModal();
    return () => {
      if (dialog.open) dialog.close();
      opener?.focus?.();
    };
  }, []);
  return (
    <dialog ref={ref} onCancel={(event) => (event.preventDefault(), onClose())} {...props}>
      {children}
    </dialog>
  );
}
