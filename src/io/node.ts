// Node adapters for the byte layer (not browser-safe; exported from vmstream/node): chunks from a file path, a
// Readable or any (async) iterable, gunzipped transparently when the input starts with the gzip magic 1f 8b; a
// zlib inflate for COMPRESS_PAGE records; reading the head or the tail of a file. They feed any push-style
// decoder ({ push(chunk), end() }).

import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { Readable } from "node:stream";
import { createGunzip, inflateSync } from "node:zlib";
import { joinChunks } from "./chunks.js";
import { VmstreamError } from "./errors.js";

export type ChunkSource = string | URL | Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface ChunkOptions {
  /** Read size for files (default 1 MiB). */
  readonly highWaterMark?: number;
  /** Gunzip when the data starts with 1f 8b (default true). */
  readonly gunzip?: boolean;
}

export function isGzip(b: Uint8Array): boolean {
  return b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
}

/** zlib (RFC 1950) inflate of one compressed page; throws when the data is bad or inflates past `pageSize`. */
export function nodeInflate(data: Uint8Array, pageSize: number): Uint8Array {
  const out = inflateSync(data, { maxOutputLength: pageSize });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

function toU8(c: unknown): Uint8Array {
  if (c instanceof Uint8Array) return c;
  if (typeof c === "string") return new TextEncoder().encode(c);
  throw new VmstreamError("BAD_VALUE", "a chunk of the input is not bytes", { detail: typeof c });
}

async function* iterate(source: ChunkSource, o: ChunkOptions): AsyncGenerator<Uint8Array> {
  if (typeof source === "string" || source instanceof URL) {
    yield* createReadStream(source, { highWaterMark: o.highWaterMark ?? 1 << 20 }) as AsyncIterable<Uint8Array>;
    return;
  }
  if (Symbol.asyncIterator in source) {
    for await (const c of source as AsyncIterable<unknown>) yield toU8(c);
    return;
  }
  for (const c of source as Iterable<unknown>) yield toU8(c);
}

/** The input's chunks, gunzipped when it starts with the gzip magic. */
export async function* chunksOf(source: ChunkSource, options: ChunkOptions = {}): AsyncGenerator<Uint8Array> {
  const it = iterate(source, options)[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let have = 0;
  let done = false;
  while (have < 2) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    head.push(r.value);
    have += r.value.length;
  }
  const first = head.length === 1 ? head[0]! : joinChunks(head, have);
  if (options.gunzip === false || !isGzip(first)) {
    if (first.length) yield first;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  let fed = 0;
  async function* all(): AsyncGenerator<Uint8Array> {
    fed += first.length;
    yield first;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      fed += r.value.length;
      yield r.value;
    }
  }
  const gz = createGunzip();
  const src = Readable.from(all());
  src.on("error", (e) => gz.destroy(e));
  src.pipe(gz);
  let out = 0;
  try {
    for await (const c of gz as AsyncIterable<Buffer>) {
      out += c.byteLength;
      yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
    }
  } catch (e) {
    if (e instanceof VmstreamError) throw e;
    // the offset is in the stream (the bytes inflated so far); the compressed side is known by the chunk only
    throw new VmstreamError("BAD_VALUE", "the gzip-compressed input is corrupt", {
      offset: out,
      detail: `${e instanceof Error ? e.message : String(e)} (within the first ${fed} bytes of the gzip file)`,
      cause: e,
    });
  }
}

/** Feed a push-style decoder from a source (gunzipping transparently) and finish it. */
export async function feedDecoder<R>(decoder: { push(chunk: Uint8Array): void; end(): R }, source: ChunkSource, options: ChunkOptions = {}): Promise<R> {
  for await (const c of chunksOf(source, options)) decoder.push(c);
  return decoder.end();
}

/** The first `n` bytes of a file (fewer when it is shorter), and its size. */
export async function readHead(path: string | URL, n: number): Promise<{ bytes: Uint8Array; size: number }> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const len = Math.min(n, size);
    const bytes = new Uint8Array(len);
    if (len > 0) await fh.read(bytes, 0, len, 0);
    return { bytes, size };
  } finally {
    await fh.close();
  }
}

/** The last `n` bytes of a file (fewer when it is shorter), and its size. */
export async function readTail(path: string | URL, n: number): Promise<{ bytes: Uint8Array; size: number }> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    const len = Math.min(n, size);
    const bytes = new Uint8Array(len);
    if (len > 0) await fh.read(bytes, 0, len, size - len);
    return { bytes, size };
  } finally {
    await fh.close();
  }
}
