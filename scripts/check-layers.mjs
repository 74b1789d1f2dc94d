// Layer check. The "Layers (bottom to top)" table in docs/DESIGN.md is the only source: its folder column, in
// order, ranks the layers, first row = bottom layer. Rule (stated under the table): a layer imports only from its
// own folder and from rows ABOVE it (the lower-level layers); a relative import (static, `export … from`, dynamic,
// type-only too) from a file in src/<folder>/ into a folder on a LOWER row is a violation. Files directly in src/
// are the package entry points and may import anything. A folder of src/ missing from the table, or a table
// folder that does not exist, is an error too. One line per problem; exit 1 if any (2: no table to read).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DESIGN = "docs/DESIGN.md";

/** Folders of the layer table ("src/io/", …), top row first. */
function layerTable() {
  const lines = readFileSync(join(root, DESIGN), "utf8").split("\n");
  const heading = lines.findIndex((l) => /^#+\s+Layers \(bottom to top\)\s*$/.test(l));
  if (heading < 0) fatal(`${DESIGN}: no "Layers (bottom to top)" heading`);
  let i = heading + 1;
  while (i < lines.length && !lines[i].startsWith("|")) i++;
  i += 2; // the header row and the |---| row
  const folders = [];
  for (; i < lines.length && lines[i].startsWith("|"); i++) {
    const cell = lines[i].split("|")[1].trim();
    const m = /^`([^`]+)`$/.exec(cell);
    if (!m) fatal(`${DESIGN}:${i + 1}: the folder cell is not one \`folder/\`: ${cell}`);
    const folder = m[1].replace(/\/*$/, "/");
    if (folders.includes(folder)) fatal(`${DESIGN}:${i + 1}: ${folder} is listed twice`);
    folders.push(folder);
  }
  if (folders.length === 0) fatal(`${DESIGN}: the layer table has no rows`);
  return folders;
}

function fatal(message) {
  console.error(`check-layers: ${message}`);
  process.exit(2);
}

function sourceFiles(dir) {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = posix.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(rel);
    return /\.(m?ts|m?js)$/.test(e.name) && !e.name.endsWith(".d.ts") ? [rel] : [];
  });
}

const folders = layerTable();
const rowOf = new Map(folders.map((f, i) => [f, i + 1]));
/** The table folder holding a repo-relative path, the "entry" of src/ itself, or undefined (outside the table). */
function layerOf(path) {
  const parts = path.split("/");
  if (parts[0] === "src") return parts.length === 2 ? "entry" : `src/${parts[1]}/`;
  return folders.find((f) => path.startsWith(f));
}

const problems = [];
const unlisted = new Map(); // src folder missing from the table -> { imports: Set, importedBy: Set }
const note = (folder) => unlisted.get(folder) ?? unlisted.set(folder, { imports: new Set(), importedBy: new Set() }).get(folder);

for (const name of readdirSync(join(root, "src"), { withFileTypes: true })) {
  if (name.isDirectory() && !rowOf.has(`src/${name.name}/`)) note(`src/${name.name}/`);
}
for (const folder of folders) {
  if (!existsSync(join(root, folder))) problems.push(`${folder}: listed in ${DESIGN}'s layer table but there is no such folder`);
}

for (const file of sourceFiles("src")) {
  const from = layerOf(file);
  if (from === "entry") continue;
  const text = readFileSync(join(root, file), "utf8");
  for (const { fileName: spec, pos } of ts.preProcessFile(text, true, true).importedFiles) {
    if (!spec.startsWith("./") && !spec.startsWith("../")) continue;
    const target = posix.normalize(posix.join(posix.dirname(file), spec));
    const to = layerOf(target);
    if (to === undefined || to === from) continue;
    const line = text.slice(0, pos).split("\n").length;
    const where = `${file}:${line}: import "${spec}"`;
    if (to === "entry") {
      problems.push(`${where} -> ${target} is a package entry point; layers may not import it`);
    } else if (unlisted.has(from) || unlisted.has(to)) {
      if (unlisted.has(from)) note(from).imports.add(to);
      if (unlisted.has(to)) note(to).importedBy.add(from);
    } else if (rowOf.get(to) > rowOf.get(from)) {
      problems.push(`${where} -> ${from} (row ${rowOf.get(from)}) may not import ${to} (row ${rowOf.get(to)}, lower in the table)`);
    }
  }
}

for (const [folder, { imports, importedBy }] of unlisted) {
  const list = (set, none) => (set.size ? [...set].sort((a, b) => (rowOf.get(a) ?? 0) - (rowOf.get(b) ?? 0)).join(", ") : none);
  const uses = `imports ${list(imports, "no other layer")}; imported by ${list(importedBy, "no layer of src/")}`;
  problems.push(`${folder}: not in ${DESIGN}'s layer table (${uses})`);
}

for (const p of problems) console.log(p);
if (problems.length > 0) {
  console.log(`check-layers: ${problems.length} problem(s); the layer order is the table in ${relative(process.cwd(), join(root, DESIGN))}`);
  process.exit(1);
}
