// Lets Node 20 run this repository's TypeScript directly (`node --import ./tools/ts-loader.mjs FILE.ts`), for
// developer tools such as make-fixtures.ts: `.ts` files are transpiled one by one with the TypeScript compiler
// (types are not checked: `npm run typecheck` does that; outputs cached under the OS temp dir by content hash),
// and the `./x.js` imports of NodeNext-style sources resolve to `./x.ts` when only the `.ts` file exists.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { register } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isMainThread } from "node:worker_threads";

// Imported with --import on the main thread: register this same file as the hooks module (which Node loads again,
// in its loader thread, where only the exported hooks below are used).
if (isMainThread) register(import.meta.url, import.meta.url);

const CACHE = join(tmpdir(), "vmstream-ts-loader");
let ts;

export async function resolve(specifier, context, next) {
  const relative = specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("file:");
  if (relative && specifier.endsWith(".js") && context.parentURL?.startsWith("file:")) {
    const url = new URL(specifier, context.parentURL);
    if (!existsSync(fileURLToPath(url))) {
      const tsUrl = new URL(url.href.replace(/\.js$/, ".ts"));
      if (existsSync(fileURLToPath(tsUrl))) return { url: tsUrl.href, format: "module", shortCircuit: true };
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith("file:") || !url.endsWith(".ts") || url.endsWith(".d.ts")) return next(url, context);
  const file = fileURLToPath(url);
  const source = readFileSync(file, "utf8");
  const cached = join(CACHE, createHash("sha256").update(file).update("\0").update(source).digest("hex") + ".js");
  if (existsSync(cached)) return { format: "module", source: readFileSync(cached, "utf8"), shortCircuit: true };
  ts ??= (await import("typescript")).default;
  const out = ts.transpileModule(source, {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: true },
  }).outputText;
  mkdirSync(CACHE, { recursive: true });
  const partial = `${cached}.${process.pid}.partial`;
  writeFileSync(partial, out);
  renameSync(partial, cached); // atomic: concurrent runs never read half a file
  return { format: "module", source: out, shortCircuit: true };
}
