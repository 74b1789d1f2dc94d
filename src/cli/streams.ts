// The stream commands: analyze, dump, extract, check. Data on stdout, diagnostics on stderr.
import { closeSync, constants as fsc, fstatSync, ftruncateSync, mkdirSync, openSync, realpathSync, statSync, writeSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import { formatAnalyzeJson } from "../analyze/analyze-json.js";
import { analyzeDecoderOptions, analyzeDocumentOf, dumpLines } from "../analyze/report.js";
import { printable, VmstreamError } from "../io/errors.js";
import { createKernels } from "../kernels/index.js";
import type { Kernels } from "../kernels/types.js";
import type { DecodeResult, DecoderEvent } from "../savevm/types.js";
import { incompleteError } from "../savevm/verdict.js";
import { decodeFile, decodeNodeStream, type NodeDecodeOptions, validateFile, validateNodeStream } from "../sections/node.js";
import { blockOf, ramOf } from "../sections/stream.js";
import { userMessage } from "./messages.js";

/** A progress line on stderr while a long decode runs, only when stderr is a terminal. */
function progress(path: string): { onEvent?: (e: DecoderEvent) => void; done(): void } {
  if (!process.stderr.isTTY) return { done() {} };
  let total = 0;
  try {
    if (path !== "-") total = statSync(path).size;
  } catch {
    /* the decode reports it */
  }
  const started = Date.now();
  let last = 0;
  let shown = false;
  return {
    onEvent(e) {
      if (e.type !== "section") return;
      const now = Date.now();
      if (now - started < 500 || now - last < 100) return;
      last = now;
      shown = true;
      const at = e.section.offset;
      const pct = total > 0 ? ` ${Math.min(100, Math.floor((100 * at) / total))}%` : "";
      process.stderr.write(`\r\x1b[Kvmstream: ${(at / 1e6).toFixed(1)} MB${pct}, section ${e.section.idstr}`);
    },
    done() {
      if (shown) process.stderr.write("\r\x1b[K");
    },
  };
}

async function decode(path: string, options: NodeDecodeOptions): Promise<DecodeResult> {
  const p = progress(path);
  try {
    const o = { ...analyzeDecoderOptions, ...options, ...(p.onEvent ? { onEvent: p.onEvent } : {}) };
    return path === "-" ? await decodeNodeStream(process.stdin, o) : await decodeFile(path, o);
  } finally {
    p.done();
  }
}

function report(err: unknown): number {
  process.stderr.write(`vmstream: ${userMessage(err)}\n`);
  return 1;
}

/** Write everything, waiting for a slow stdout (pipes). */
function out(text: string): Promise<void> {
  return new Promise((ok, fail) => process.stdout.write(text, (e) => (e ? fail(e) : ok())));
}

/**
 * Decode `path`, hand the result to `use`, dispose it. The verdict is check's: exit code 0 for a complete stream,
 * 1 with the error on stderr for a broken or incomplete one. An incomplete stream is handed to `use` only when
 * `printFirst` (analyze, dump: what was decoded is printed, then the verdict); otherwise (extract) nothing is
 * written for it.
 */
async function withDecoded(path: string, options: NodeDecodeOptions, use: (result: DecodeResult) => Promise<void>, printFirst = false): Promise<number> {
  let result: DecodeResult | undefined;
  try {
    result = await decode(path, options);
    const incomplete = incompleteError(result);
    if (incomplete && !printFirst) throw incomplete;
    await use(result);
    if (incomplete) throw incomplete;
    return 0;
  } catch (e) {
    return report(e);
  } finally {
    result?.dispose();
  }
}

export function analyzeCommand(path: string, opts: { dump: "state" | "desc"; memory: boolean }): Promise<number> {
  return withDecoded(
    path,
    { materialize: opts.memory ? { ram: true } : false },
    async (result) => {
      if (opts.dump === "desc") {
        if (!result.vmdesc) throw new VmstreamError("NO_VMDESC", "the stream has no vmdesc trailer (old machine type, postcopy, or suppress-vmdesc)");
        await out(formatAnalyzeJson(result.vmdesc.json as never));
      } else {
        await out(analyzeDocumentOf(result, { memory: opts.memory }).format());
      }
      for (const w of result.warnings) process.stderr.write(`vmstream: warning: ${printable(w)}\n`);
    },
    true,
  );
}

export function dumpCommand(path: string): Promise<number> {
  return withDecoded(
    path,
    { materialize: false },
    async (result) => {
      const lines: string[] = [];
      dumpLines(result, (l) => lines.push(l));
      await out(lines.join("\n") + "\n");
    },
    true,
  );
}

export async function checkCommand(path: string): Promise<number> {
  const p = progress(path);
  const o = { ...analyzeDecoderOptions, ...(p.onEvent ? { onEvent: p.onEvent } : {}) };
  const v = path === "-" ? await validateNodeStream(process.stdin, o) : await validateFile(path, o);
  p.done();
  const s = v.summary;
  if (v.ok) {
    const live = Object.keys(s.live).join(", ") || "none";
    const machine = s.machine ?? "(no configuration)";
    await out(
      printable(
        `OK: ${s.bytes} bytes, machine ${machine}, ${s.sections} sections (iterative: ${live}), ${s.devices} devices, ${s.vmdesc ? "vmdesc" : "no vmdesc"}, complete`,
      ) + "\n",
    );
    return 0;
  }
  await out(`BROKEN: ${v.error ? userMessage(v.error) : "incomplete stream"}\n`);
  return 1;
}

/**
 * A file name for a RAM block or device name that stays inside DIR: the name's characters outside
 * [A-Za-z0-9._@+-] become "_", leading dots and slashes go, and nothing can be "." or "..".
 */
export function safeName(name: string, used: Set<string>): string {
  let s = name.replace(/[^A-Za-z0-9._@+-]/g, "_").replace(/^[._]+/, "");
  if (s === "") s = "unnamed";
  s = s.slice(0, 200);
  let candidate = s;
  for (let i = 2; used.has(candidate); i++) candidate = `${s}-${i}`;
  used.add(candidate);
  return candidate;
}

/** Open a new file inside `dir` for writing, never following a link planted there. */
function createIn(dir: string, name: string): number {
  const path = join(dir, name);
  if (resolve(path) !== resolve(dir, name) || !resolve(path).startsWith(resolve(dir) + sep)) {
    throw new VmstreamError("RANGE", `refusing to write outside ${dir}: ${name}`);
  }
  return openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o644);
}

/** Write `data` as a sparse file: only non-zero pages are written (zero pages found by the kernels). */
function writeSparse(fd: number, data: Uint8Array, pageSize: number, zeroMap: (ptr: number, pages: number) => Uint8Array | undefined, ptr: number): void {
  ftruncateSync(fd, data.length);
  const pages = Math.floor(data.length / pageSize);
  const bitmap = zeroMap(ptr, pages);
  let run = -1;
  const flush = (end: number) => {
    if (run < 0) return;
    const from = run * pageSize;
    writeSync(fd, data, from, end * pageSize - from, from);
    run = -1;
  };
  for (let p = 0; p < pages; p++) {
    const zero = bitmap ? (bitmap[p >> 3]! >> (p & 7)) & 1 : isZero(data, p * pageSize, pageSize);
    if (zero) flush(p);
    else if (run < 0) run = p;
  }
  flush(pages);
  const tail = pages * pageSize;
  if (tail < data.length) writeSync(fd, data, tail, data.length - tail, tail);
}

function isZero(b: Uint8Array, at: number, n: number): boolean {
  for (let i = at; i < at + n; i++) if (b[i] !== 0) return false;
  return true;
}

export function extractCommand(path: string, dir: string): Promise<number> {
  const kernels = createKernels();
  return withDecoded(path, { materialize: { ram: true, block: true }, kernels }, async (result) => {
    await out(writeExtraction(result, kernels, dir).join("\n") + "\n");
  });
}

/**
 * Write what `extract` writes (RAM blocks, disks, desc.json, state.json) from a decode result whose RAM and
 * disks were materialised with `kernels`; returns one line per file. Shared with `receive --extract`.
 */
export function writeExtraction(result: DecodeResult, kernels: Kernels, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const real = realpathSync(dir);
  mkdirSync(join(real, "ram"), { recursive: true });
  mkdirSync(join(real, "disk"), { recursive: true });
  const used = new Set<string>();
  const lines: string[] = [];
  const ram = ramOf(result);
  for (const b of ram?.blocks ?? []) {
    const data = b.data;
    if (!data) continue;
    const name = `ram/${safeName(b.name, used)}.bin`;
    const fd = createIn(real, name);
    try {
      const P = result.pageSize;
      writeSparse(
        fd,
        data,
        P,
        (ptr, pages) => {
          const bm = kernels.alloc(Math.ceil(pages / 8) + 8, 8);
          kernels.zeroPages(ptr, pages, bm, P);
          const copy = kernels.u8.slice(bm, bm + Math.ceil(pages / 8));
          kernels.free(bm);
          return copy;
        },
        b.ptr,
      );
      const written = fstatSync(fd).size;
      lines.push(`${name}\t${written} bytes\tRAM block ${printable(JSON.stringify(b.name))}`);
    } finally {
      closeSync(fd);
    }
  }
  for (const d of blockOf(result)?.devices ?? []) {
    if (!d.image) continue;
    const name = `disk/${safeName(d.name, used)}.img`;
    const fd = createIn(real, name);
    try {
      writeSparse(fd, d.image, 4096, () => undefined, 0);
      lines.push(`${name}\t${d.image.length} bytes\tblock device ${printable(JSON.stringify(d.name))} (the last 1 MiB chunk may run past the device's end)`);
    } finally {
      closeSync(fd);
    }
  }
  if (result.vmdesc) {
    const fd = createIn(real, "desc.json");
    try {
      writeSync(fd, formatAnalyzeJson(result.vmdesc.json as never));
    } finally {
      closeSync(fd);
    }
    lines.push("desc.json\tthe stream's vmdesc");
  }
  const fd = createIn(real, "state.json");
  try {
    writeSync(fd, analyzeDocumentOf(result).format());
  } finally {
    closeSync(fd);
  }
  lines.push("state.json\tdevice state (analyze format)");
  return lines;
}
