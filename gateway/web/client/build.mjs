// Builds Nova's web client and GraphiQL into ../dist with content-hashed names.
// Run by deployments/web_build.py when the sources change; `npm run build` by hand.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "dist");
const assets = join(dist, "assets");

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

const result = await build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.jsx", graphiql: "graphiql/main.jsx" },
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "esm",
  splitting: false,
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  jsx: "automatic",
  // The client is Preact; graphiql/main.jsx names React with a @jsxImportSource pragma.
  jsxImportSource: "preact",
  define: { "process.env.NODE_ENV": '"production"' },
  outdir: assets,
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".woff2": "file", ".woff": "file", ".ttf": "file", ".svg": "file" },
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

// One entry per page: its script and stylesheet, named by content.
const pages = {};
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  if (!output.entryPoint) continue;
  const page = output.entryPoint.startsWith("graphiql") ? "graphiql" : "app";
  pages[page] = { script: "/assets/" + basename(file) };
  if (output.cssBundle) pages[page].style = "/assets/" + basename(output.cssBundle);
}

const sizes = {};
for (const file of Object.keys(result.metafile.outputs)) {
  if (file.endsWith(".map")) continue;
  const bytes = await readFile(join(here, file));
  const gz = gzipSync(bytes, { level: 9 });
  await writeFile(join(here, file) + ".gz", gz);
  sizes[basename(file)] = { bytes: bytes.length, gzip: gz.length };
}

for (const page of ["app", "graphiql"]) {
  const template = await readFile(join(here, `${page}.html`), "utf8");
  const html = template
    .replace("{{script}}", pages[page].script)
    .replace("{{style}}", pages[page].style ?? "");
  await writeFile(join(dist, `${page}.html`), html);
}
await writeFile(join(dist, "manifest.json"), JSON.stringify({ pages, sizes }, null, 2));
