// Node entry points of the stream decoder (not browser-safe; not re-exported by src/sections/index.ts):
// decode or validate a file, a Readable or an async iterable, gunzipping transparently, with zlib inflate
// for COMPRESS_PAGE records. For a plain (random-access) file the vmdesc trailer is read from the end first
// and passed in, so device sections decode as they arrive and nothing is buffered; the result is the same
// as decoding the stream front to back.
import { chunksOf, isGzip, nodeInflate, readHead, readTail, type ChunkOptions, type ChunkSource } from "../io/node.js";
import { VmstreamError } from "../io/errors.js";
import { emptySummary, runValidation } from "../savevm/decoder.js";
import { DEFAULT_LIMITS } from "../savevm/constants.js";
import type { DecodeResult, ValidationResult } from "../savevm/types.js";
import { findVmdescTrailer } from "../savevm/vmdesc.js";
import { StreamDecoder, decodeStream, type StreamDecoderOptions } from "./stream.js";

export interface NodeDecodeOptions extends StreamDecoderOptions, ChunkOptions {
  /** For plain files: read the vmdesc from the end of the file before decoding (default true). */
  readonly vmdescFirst?: boolean;
}

function withNodeDefaults<T extends StreamDecoderOptions>(o: T): T {
  return { ...o, inflate: o.inflate ?? nodeInflate };
}

/** The vmdesc JSON text at the end of a plain file, if it has one (read in growing tails up to the limit). */
export async function readVmdescTrailer(path: string | URL, maxBytes = DEFAULT_LIMITS.vmdescBytes, maxDepth = DEFAULT_LIMITS.vmdescDepth): Promise<string | undefined> {
  let n = 1 << 20;
  for (;;) {
    const { bytes, size } = await readTail(path, Math.min(n, maxBytes + 6));
    const found = findVmdescTrailer(bytes, maxBytes, maxDepth);
    if (found) return found.text;
    if (bytes.length >= size || bytes.length >= maxBytes + 6) return undefined;
    n *= 4;
  }
}

async function fileOptions(path: string | URL, options: NodeDecodeOptions): Promise<NodeDecodeOptions> {
  if (options.vmdescFirst === false || options.vmdesc !== undefined) return options;
  const head = await readHead(path, 2);
  if (isGzip(head.bytes)) return options;
  const limits = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  const text = await readVmdescTrailer(path, limits.vmdescBytes, limits.vmdescDepth);
  return text === undefined ? options : { ...options, vmdesc: text };
}

/** Decode a migration stream file (plain or gzip). */
export async function decodeFile(path: string | URL, options: NodeDecodeOptions = {}): Promise<DecodeResult> {
  const o = withNodeDefaults(await fileOptions(path, options));
  return decodeStream(chunksOf(path, o), o);
}

/** Decode from a Readable or an (async) iterable of chunks (gunzipped when it starts with 1f 8b). */
export async function decodeNodeStream(source: ChunkSource, options: NodeDecodeOptions = {}): Promise<DecodeResult> {
  const o = withNodeDefaults(options);
  return decodeStream(chunksOf(source, o), o);
}

/** `check` verdict for a file. Never throws for bad input. */
export async function validateFile(path: string | URL, options: NodeDecodeOptions = {}): Promise<ValidationResult> {
  let o: NodeDecodeOptions;
  try {
    o = withNodeDefaults(await fileOptions(path, options));
  } catch (e) {
    return { ok: false, error: VmstreamError.wrap(e, {}, "IO"), summary: emptySummary() };
  }
  return validateNodeStream(path, o);
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
