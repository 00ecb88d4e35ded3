// A screen built apart from the app (build.mjs's `LAZY_SCREENS`) and imported when first
// shown, so the first page does not carry it.
import { useEffect, useState } from "preact/hooks";
import "../lazy/shared.js";
import { ErrorText } from "./common.jsx";

const loaded = {};

/** Renders export `component` of lazy screen `screen` with the other props. */
export function Lazy({ screen, component, ...props }) {
  const [module, setModule] = useState(() => loaded[screen] ?? null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (module) return;
    // LAZY_SCREENS: where build.mjs put each screen, assets of this origin.
    import(LAZY_SCREENS[screen]).then(
      (found) => setModule((loaded[screen] = found)),
      () => setError(new Error("This screen could not be loaded: check your connection and reload.")),
    );
  }, [screen]);
  if (error) return <ErrorText error={error} />;
  if (!module) return <p class="muted">Loading…</p>;
  const Component = module[component];
  return <Component {...props} />;
}
