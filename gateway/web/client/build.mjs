// Builds Nova's web client and GraphiQL into ../dist with content-hashed names.
// Run by deployments/web_build.py when the sources change; `npm run build` by hand.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "dist");
const assets = join(dist, "assets");
// The first page's script and stylesheet, gzipped, may not grow past this: what the feed
// does not need at once (hls.js, for one) is built apart and imported when needed.
const FIRST_PAGE_GZIP_BUDGET = 48_000;

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  // The client is Preact; graphiql/main.jsx names React with a @jsxImportSource pragma.
  jsxImportSource: "preact",
  define: { "process.env.NODE_ENV": '"production"' },
  outdir: assets,
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".woff2": "file", ".woff": "file", ".ttf": "file", ".svg": "file" },
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
};
// hls.js first, on its own: the app names its file (`LAZY_HLS_URL`) and imports it only
// where it is needed. A chunk split off the app would share esbuild's helpers with it,
// and the first page would load that shared chunk too.
const lazy = await build({ ...common, entryPoints: { hls: "src/lazy/hls.js" } });
const lazyHls = Object.keys(lazy.metafile.outputs).find((file) => file.endsWith(".js"));

// Screens few people open (moderation, the report dialog) or that open below the fold
// (notification settings, your data and account deletion),
// built apart and imported by `ui/lazy.jsx` when first shown. They import Preact and the
// app's own modules as usual; this plugin points those imports at the instances the app
// lends them (`src/lazy/shared.js`), so one session, router and API client serve both.
const LAZY_SCREENS = {
  moderation: "src/views/moderation.jsx",
  notificationSettings: "src/views/notification-settings.jsx",
  privacySettings: "src/views/privacy-settings.jsx",
  report: "src/views/report-dialog.jsx",
};
const SHARED_PACKAGES = /^(preact|preact\/hooks|preact\/jsx-runtime|@preact\/signals)$/;
const SHARED_FILES = new Set(["src/api.js", "src/notices.js", "src/router.js", "src/session.js", "src/ui/common.jsx"]);
const fromApp = {
  name: "from-app",
  setup(builder) {
    builder.onResolve({ filter: SHARED_PACKAGES }, (args) => ({ path: args.path, namespace: "app" }));
    builder.onResolve({ filter: /^\.\.?\// }, (args) => {
      const file = relative(here, resolve(args.resolveDir, args.path));
      return SHARED_FILES.has(file) ? { path: file, namespace: "app" } : undefined;
    });
    builder.onLoad({ filter: /.*/, namespace: "app" }, (args) => ({
      // A module the app does not lend fails loudly; a name it does not lend reads as
      // undefined (esbuild copies a CommonJS module's names), which the browser tests catch.
      contents: `const lent = globalThis.__novaShared?.[${JSON.stringify(args.path)}];
if (!lent) throw new Error("src/lazy/shared.js does not lend ${args.path}");
module.exports = lent;`,
      loader: "js",
    }));
  },
};
const screens = await build({ ...common, entryPoints: LAZY_SCREENS, plugins: [fromApp] });
const screenUrls = {};
for (const [file, output] of Object.entries(screens.metafile.outputs)) {
  const name = Object.keys(LAZY_SCREENS).find((key) => LAZY_SCREENS[key] === output.entryPoint);
  if (name && file.endsWith(".js")) screenUrls[name] = "/assets/" + basename(file);
}
// The app and GraphiQL apart too: each page loads exactly one script.
const builds = await Promise.all([
  build({
    ...common,
    entryPoints: { app: "src/main.jsx" },
    define: {
      ...common.define,
      LAZY_HLS_URL: JSON.stringify("/assets/" + basename(lazyHls)),
      LAZY_SCREENS: JSON.stringify(screenUrls),
    },
    external: ["/assets/*"],
  }),
  build({ ...common, entryPoints: { graphiql: "graphiql/main.jsx" } }),
]);
const outputs = Object.assign({}, lazy.metafile.outputs, screens.metafile.outputs, ...builds.map((result) => result.metafile.outputs));

// One entry per page: its script and stylesheet, named by content.
const ENTRIES = { "src/main.jsx": "app", "graphiql/main.jsx": "graphiql" };
const pages = {};
for (const [file, output] of Object.entries(outputs)) {
  const page = ENTRIES[output.entryPoint];
  if (!page) continue; // loaded lazily
  pages[page] = { script: "/assets/" + basename(file) };
  if (output.cssBundle) pages[page].style = "/assets/" + basename(output.cssBundle);
}

const sizes = {};
for (const file of Object.keys(outputs)) {
  if (file.endsWith(".map")) continue;
  const bytes = await readFile(join(here, file));
  const gz = gzipSync(bytes, { level: 9 });
  await writeFile(join(here, file) + ".gz", gz);
  sizes[basename(file)] = { bytes: bytes.length, gzip: gz.length };
}

const firstPage = Object.values(pages.app).reduce((sum, path) => sum + sizes[basename(path)].gzip, 0);
if (firstPage > FIRST_PAGE_GZIP_BUDGET) {
  throw new Error(`the app page's script and stylesheet are ${firstPage} bytes gzipped, over the budget of ${FIRST_PAGE_GZIP_BUDGET}`);
}

for (const page of ["app", "graphiql"]) {
  const template = await readFile(join(here, `${page}.html`), "utf8");
  const html = template
    .replace("{{script}}", pages[page].script)
    .replace("{{style}}", pages[page].style ?? "");
  await writeFile(join(dist, `${page}.html`), html);
}
await writeFile(join(dist, "manifest.json"), JSON.stringify({ pages, sizes }, null, 2));
