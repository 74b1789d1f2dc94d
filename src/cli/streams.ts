// The stream commands: analyze, dump, extract, check. Data on stdout, diagnostics on stderr.
import { closeSync, fstatSync, ftruncateSync, statSync, writeSync } from "node:fs";
import { formatAnalyzeJson } from "../analyze/analyze-json.js";
import { analyzeDecoderOptions, analyzeDocumentOf, dumpLines } from "../analyze/report.js";
import { printable, VmstreamError } from "../io/errors.js";
import { OutputDir } from "../io/output-files.js";
import { createKernels } from "../kernels/index.js";
import type { Kernels } from "../kernels/types.js";
import type { DecodeResult, DecoderEvent } from "../savevm/types.js";
import { incompleteError } from "../savevm/verdict.js";
import { decodeFile, decodeNodeStream, type NodeDecodeOptions, validateFile, validateNodeStream } from "../sections/node.js";
import type { RamBlockResult } from "../sections/ram/handler.js";
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

/** `--max-memory`: the decoder's limit on what it materialises (limits.materializedBytes). */
export function materializedLimit(maxMemory: number | undefined): { limits?: { materializedBytes: number } } {
  return maxMemory === undefined ? {} : { limits: { materializedBytes: maxMemory } };
}

export function analyzeCommand(path: string, opts: { dump: "state" | "desc"; memory: boolean; maxMemory?: number }): Promise<number> {
  return withDecoded(
    path,
    { materialize: opts.memory ? { ram: true } : false, ...materializedLimit(opts.maxMemory) },
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

/**
 * Write the pages of `data` that are not zero at file offset `at` (zero pages stay holes); `zero(p)` says whether
 * page p is all zero. A tail shorter than a page is written unless it is zero.
 */
function writeNonZeroPages(fd: number, data: Uint8Array, at: number, pageSize: number, zero: (page: number) => boolean): void {
  const pages = Math.floor(data.length / pageSize);
  let run = -1;
  const flush = (end: number) => {
    if (run < 0) return;
    const from = run * pageSize;
    writeSync(fd, data, from, end * pageSize - from, at + from);
    run = -1;
  };
  for (let p = 0; p < pages; p++) {
    if (zero(p)) flush(p);
    else if (run < 0) run = p;
  }
  flush(pages);
  const tail = pages * pageSize;
  if (tail < data.length && !isZero(data, tail, data.length - tail)) writeSync(fd, data, tail, data.length - tail, at + tail);
}

function isZero(b: Uint8Array, at: number, n: number): boolean {
  for (let i = at; i < at + n; i++) if (b[i] !== 0) return false;
  return true;
}

/** Bit i of a little-endian bitmap. */
function bitAt(map: Uint8Array, i: number): boolean {
  return ((map[i >> 3]! >> (i & 7)) & 1) === 1;
}

/** Pages the kernels check for zero at a time when writing a RAM block (a 4 KiB bitmap of scratch). */
const RUN_PAGES = 32768;

/**
 * A materialised RAM block as a sparse file of its length. Only the pages the stream wrote (`written`) are read:
 * reading the others would make the system commit them. Of those, the kernels find the zero ones, left as holes.
 */
function writeRamBlock(fd: number, kernels: Kernels, block: RamBlockResult, pageSize: number): void {
  const length = Number(block.length);
  ftruncateSync(fd, length);
  const pages = Math.floor(length / pageSize);
  const bm = kernels.alloc(RUN_PAGES / 8 + 8, 8);
  try {
    const written = block.written?.slice();
    for (let p = 0; p < pages; ) {
      if (written) {
        // skip pages never written (a byte at a time where the bitmap is empty), then take the run that follows
        while (p < pages && !bitAt(written, p)) p = (p & 7) === 0 && written[p >> 3] === 0 ? p + 8 : p + 1;
        if (p >= pages) break;
      }
      let end = p + 1;
      const cap = Math.min(pages, p + RUN_PAGES);
      while (end < cap && (!written || bitAt(written, end))) end++;
      const n = end - p;
      kernels.zeroPages(block.ptr + p * pageSize, n, bm, pageSize);
      const u8 = kernels.u8;
      const zeroBits = u8.subarray(bm, bm + Math.ceil(n / 8));
      writeNonZeroPages(fd, u8.subarray(block.ptr + p * pageSize, block.ptr + end * pageSize), p * pageSize, pageSize, (i) => bitAt(zeroBits, i));
      p = end;
    }
    // the bytes after the last whole page: no page record can reach them, a host's block may hold any
    const tail = pages * pageSize;
    if (tail < length) writeNonZeroPages(fd, kernels.u8.subarray(block.ptr + tail, block.ptr + length), tail, pageSize, () => false);
  } finally {
    kernels.free(bm);
  }
}

/** A materialised disk image as a sparse file of its `end` bytes: its granules' non-zero pages, nothing else. */
function writeDiskImage(fd: number, end: number, granules: ReadonlyMap<number, Uint8Array>): void {
  ftruncateSync(fd, end);
  const P = 4096;
  for (const g of [...granules.keys()].sort((a, b) => a - b)) {
    const bytes = granules.get(g)!;
    const at = g * bytes.length;
    const data = bytes.subarray(0, Math.min(bytes.length, end - at));
    writeNonZeroPages(fd, data, at, P, (p) => isZero(data, p * P, P));
  }
}

export function extractCommand(path: string, dir: string, opts: { maxMemory?: number } = {}): Promise<number> {
  const kernels = createKernels();
  return withDecoded(path, { materialize: { ram: true, block: true }, kernels, ...materializedLimit(opts.maxMemory) }, async (result) => {
    const folder = OutputDir.open(dir);
    try {
      await out(writeExtraction(result, kernels, folder).join("\n") + "\n");
    } finally {
      folder.close();
    }
  });
}

/**
 * Write what `extract` writes (RAM blocks, disks, desc.json, state.json) from a decode result whose RAM and
 * disks were materialised with `kernels`; returns one line per file. Shared with `receive --extract`. Every
 * file is created new inside `dir`, through no link (OutputDir).
 */
export function writeExtraction(result: DecodeResult, kernels: Kernels, dir: OutputDir): string[] {
  const used = new Set<string>();
  const lines: string[] = [];
  const ram = ramOf(result);
  for (const b of ram?.blocks ?? []) {
    if (!b.data) continue;
    const name = `ram/${safeName(b.name, used)}.bin`;
    const fd = dir.create(name);
    try {
      writeRamBlock(fd, kernels, b, result.pageSize);
      const written = fstatSync(fd).size;
      lines.push(`${name}\t${written} bytes\tRAM block ${printable(JSON.stringify(b.name))}`);
    } finally {
      closeSync(fd);
    }
  }
  for (const d of blockOf(result)?.devices ?? []) {
    if (!d.granules) continue;
    const name = `disk/${safeName(d.name, used)}.img`;
    const fd = dir.create(name);
    try {
      writeDiskImage(fd, d.end, d.granules);
      lines.push(`${name}\t${d.end} bytes\tblock device ${printable(JSON.stringify(d.name))} (the last 1 MiB chunk may run past the device's end)`);
    } finally {
      closeSync(fd);
    }
  }
  if (result.vmdesc) {
    const fd = dir.create("desc.json");
    try {
      writeSync(fd, formatAnalyzeJson(result.vmdesc.json as never));
    } finally {
      closeSync(fd);
    }
    lines.push("desc.json\tthe stream's vmdesc");
  }
  const fd = dir.create("state.json");
  try {
    writeSync(fd, analyzeDocumentOf(result).format());
  } finally {
    closeSync(fd);
  }
  lines.push("state.json\tdevice state (analyze format)");
  return lines;
}
