// Copies the pinned front-end libraries the pages serve (and axe-core, which the page tests inject)
// from node_modules into shared/web/vendor/, each with its licence, plus a manifest of versions.
// Run through `make vendor`; its output is committed, so nothing needs npm or a CDN at run time.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "shared", "web", "vendor");
const FILES = {
  "axe-core": ["axe.min.js"],
  "htmx.org": ["dist/htmx.min.js"],
  idb: ["build/index.js"],
  leaflet: ["dist/leaflet.js", "dist/leaflet.css", "dist/images"],
};

rmSync(target, { recursive: true, force: true });
const manifest = {};
for (const [name, files] of Object.entries(FILES)) {
  const source = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
  const destination = join(target, name);
  mkdirSync(destination, { recursive: true });
  for (const file of [...files, "LICENSE"]) {
    cpSync(join(source, file), join(destination, file.split("/").pop()), { recursive: true });
  }
  manifest[name] = { version: meta.version, license: meta.license, files: files.map((f) => f.split("/").pop()) };
}
writeFileSync(join(target, "VERSIONS.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`vendored ${Object.keys(manifest).length} libraries into ${target}`);
