// Node entry points of the stream decoder: decode or validate a file, a Readable or an async iterable
// (gunzipped transparently, zlib inflate for COMPRESS_PAGE); a plain file has its vmdesc read from the end first
// and is read straight into the decoder's window (docs/decoder.md).
import { closeSync, openSync, readSync } from "node:fs";
import { stat } from "node:fs/promises";
import { VmstreamError } from "../io/errors.js";
import { type ChunkOptions, type ChunkSource, chunksOf, isGzip, nodeInflate, readHead, readTail } from "../io/node.js";
import { DEFAULT_LIMITS } from "../savevm/constants.js";
import type { DecodeResult, ValidationResult } from "../savevm/types.js";
import { emptySummary, failedVerdictOf, runValidation, verdictOf } from "../savevm/verdict.js";
import { findVmdescTrailer } from "../savevm/vmdesc.js";
import { decodeStream, StreamDecoder, type StreamDecoderOptions } from "./stream.js";

export interface NodeDecodeOptions extends StreamDecoderOptions, ChunkOptions {
  /** For plain files: read the vmdesc from the end of the file before decoding (default true). */
  readonly vmdescFirst?: boolean;
}

function withNodeDefaults<T extends StreamDecoderOptions>(o: T): T {
  return { ...o, inflate: o.inflate ?? nodeInflate };
}

/** The vmdesc JSON text at the end of a plain file, if it has one (read in growing tails up to the limit). */
export async function readVmdescTrailer(
  path: string | URL,
  maxBytes = DEFAULT_LIMITS.vmdescBytes,
  maxDepth = DEFAULT_LIMITS.vmdescDepth,
): Promise<string | undefined> {
  let n = 1 << 20;
  for (;;) {
    const { bytes, size } = await readTail(path, Math.min(n, maxBytes + 6));
    const found = findVmdescTrailer(bytes, maxBytes, maxDepth);
    if (found) return found.text;
    if (bytes.length >= size || bytes.length >= maxBytes + 6) return undefined;
    n *= 4;
  }
}

interface FilePlan {
  readonly options: NodeDecodeOptions;
  /** A regular file that is not gzip-compressed: read straight into the decoder's window. */
  readonly plain: boolean;
}

async function planFile(path: string | URL, options: NodeDecodeOptions): Promise<FilePlan> {
  // a pipe or a device (e.g. /dev/stdin, <(...)): read it front to back once, as a stream
  if (!(await stat(path)).isFile()) return { options, plain: false };
  const head = await readHead(path, 2);
  const plain = options.gunzip === false || !isGzip(head.bytes);
  if (!plain || options.vmdescFirst === false || options.vmdesc !== undefined) return { options, plain };
  const limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  const text = await readVmdescTrailer(path, limits.vmdescBytes, limits.vmdescDepth);
  return { options: text === undefined ? options : { ...options, vmdesc: text }, plain };
}

/** Read size for plain files (highWaterMark: default 1 MiB, at least 64 KiB). */
function readSize(o: ChunkOptions): number {
  return Math.max(64 << 10, o.highWaterMark ?? 1 << 20);
}

/** Longest stretch of synchronous reading and decoding before feedPlainFile lets the event loop run. */
const YIELD_MS = 16;
const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Feed a plain file to a decoder. Each read goes straight into the decoder's input window in the kernels'
 * memory (no intermediate buffer, no copy). Reads are synchronous: a promise per read costs more than the
 * read itself from the page cache (a 1 GB/s-class difference); the loop hands the event loop a turn every
 * YIELD_MS, so other work still runs. Nothing else runs during a read, so the view of the window cannot be
 * invalidated (by a memory grow) while the read writes into it, even with kernels shared with other code.
 */
async function feedPlainFile(d: StreamDecoder, path: string | URL, o: NodeDecodeOptions): Promise<void> {
  const size = readSize(o);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw VmstreamError.wrap(e, {}, "IO");
  }
  try {
    let pos = 0;
    let turn = performance.now();
    for (;;) {
      const dst = d.inputSpace(size);
      let n: number;
      try {
        n = readSync(fd, dst, 0, Math.min(dst.length, size), null);
      } catch (e) {
        throw VmstreamError.wrap(e, { offset: pos }, "IO");
      }
      if (n === 0) return;
      pos += n;
      d.commit(n);
      if (performance.now() - turn >= YIELD_MS) {
        await yieldToEventLoop();
        turn = performance.now();
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function decodePlainFile(path: string | URL, o: NodeDecodeOptions): Promise<DecodeResult> {
  const d = new StreamDecoder(o);
  try {
    await feedPlainFile(d, path, o);
    return d.end();
  } catch (e) {
    d.dispose();
    throw e;
  }
}

/** Decode a migration stream file (plain or gzip). */
export async function decodeFile(path: string | URL, options: NodeDecodeOptions = {}): Promise<DecodeResult> {
  const plan = await planFile(path, options);
  const o = withNodeDefaults(plan.options);
  if (plan.plain) return decodePlainFile(path, o);
  return decodeStream(chunksOf(path, o), o);
}

/** Decode from a Readable or an (async) iterable of chunks (gunzipped when it starts with 1f 8b). */
export async function decodeNodeStream(source: ChunkSource, options: NodeDecodeOptions = {}): Promise<DecodeResult> {
  const o = withNodeDefaults(options);
  return decodeStream(chunksOf(source, o), o);
}

/** `check` verdict for a file. Never throws for bad input. RAM is never materialised. */
export async function validateFile(path: string | URL, options: NodeDecodeOptions = {}): Promise<ValidationResult> {
  let plan: FilePlan;
  try {
    plan = await planFile(path, options);
  } catch (e) {
    return { ok: false, error: VmstreamError.wrap(e, {}, "IO"), summary: emptySummary() };
  }
  const o = withNodeDefaults(plan.options);
  if (!plan.plain) return validateNodeStream(path, o);
  let d: StreamDecoder;
  try {
    d = new StreamDecoder({ ...o, materialize: false });
  } catch (e) {
    return { ok: false, error: VmstreamError.wrap(e), summary: emptySummary() };
  }
  try {
    await feedPlainFile(d, path, o);
    return verdictOf(d, d.end());
  } catch (e) {
    return failedVerdictOf(d, e);
  }
}

/** `check` verdict for a Readable, an (async) iterable or a path (no tail read). Never throws for bad input. */
export async function validateNodeStream(source: ChunkSource, options: NodeDecodeOptions = {}): Promise<ValidationResult> {
  const o = withNodeDefaults(options);
  let d: StreamDecoder;
  try {
    d = new StreamDecoder({ ...o, materialize: false });
  } catch (e) {
    return { ok: false, error: VmstreamError.wrap(e), summary: emptySummary() };
  }
  return runValidation(d, chunksOf(source, o));
}
