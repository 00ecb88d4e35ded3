// What the app lends its lazily loaded screens (build.mjs's `LAZY_SCREENS`). build.mjs
// points their imports of these modules here, so a screen loaded later shares the app's one
// Preact, session and API client instead of carrying copies of its own. Only the names the
// screens use are lent (a namespace would keep all of each module in the first page): a
// screen that imports another name must add it here.
import { Fragment, h } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { Fragment as JsxFragment, jsx, jsxs } from "preact/jsx-runtime";
import { mutate, query } from "../api.js";
import { notify } from "../notices.js";
import { navigate } from "../router.js";
import { session, tokenRoles } from "../session.js";
import { Dialog, displayName, ErrorText, Field, newId, Time, useAction, useForm, useLoad, useScreen } from "../ui/common.jsx";

// Keyed as build.mjs names them: the package, or the file from the client's directory.
globalThis.__novaShared = {
  preact: { Fragment, h },
  "preact/hooks": { useEffect, useRef, useState },
  "preact/jsx-runtime": { Fragment: JsxFragment, jsx, jsxs },
  "src/api.js": { mutate, query },
  "src/notices.js": { notify },
  "src/router.js": { navigate },
  "src/session.js": { session, tokenRoles },
  "src/ui/common.jsx": { Dialog, displayName, ErrorText, Field, newId, Time, useAction, useForm, useLoad, useScreen },
};
